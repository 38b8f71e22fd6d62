"""Python client for moe-router-server (moe_router.v1), for inference stacks.

    from moe_router_client import RouterClient
    client = RouterClient("localhost:50051")
    ids, weights = client.route("demo-deepseek-v3", layer=3, hidden=hidden_states)

`hidden` is a numpy array [tokens, hidden]: float32, float16, or bfloat16 given as a
uint16 view of the bits (or an ml_dtypes bfloat16 array). Returns (ids int32 [tokens,
top_k], weights float32 [tokens, top_k]). Errors raise grpc.RpcError with the server's
status code and message (e.g. INVALID_ARGUMENT naming the field). AsyncRouterClient has
the same calls for asyncio code (`await client.route(...)`), on a grpc.aio channel.

Needs the generated modules (moe_router/v1/router_pb2*.py): the CMake build writes them
to build/.../python; put that folder on PYTHONPATH, or run client/python/generate.sh.
Dependencies: grpcio, protobuf, numpy (Debian: python3-grpcio python3-protobuf python3-numpy).
"""

import ipaddress
import itertools
import re

import grpc
import numpy as np

from moe_router.v1 import router_pb2, router_pb2_grpc

__all__ = ["AsyncRouterClient", "RouterClient", "StreamResult", "check_target"]


# The target's check (client/target_address.h's rules, in Python): gRPC's DNS resolver takes
# a port past 65535 modulo 65536 and "4464x" as 4464, so "localhost:70000" reached a server
# on port 4464; its ipv4:/ipv6: schemes refuse a bad port only as "Failed to create channel".
def _port_problem(port):
    if not (0 < len(port) <= 5 and port.isascii() and port.isdigit()):
        return f"has no port number 1..65535 ('{port}')"
    if not 1 <= int(port) <= 65535:
        return f"has port {int(port)}, outside 1..65535"
    return ""


def _host_problem(host):
    if not host:
        return "has no host before the port"
    if host.startswith("["):
        try:
            if not host.endswith("]"):
                raise ValueError
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"has {host}, not an IPv6 address in brackets"
        return ""
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"has {host}, not an IPv4 address"
        return ""
    if not re.fullmatch(r"[A-Za-z0-9.-]+", host):
        return f"has '{host}', not a host name or address (IPv6 addresses go in brackets)"
    return ""


def _host_port_problem(host_port):
    host, port = host_port, None
    if host_port.startswith("["):
        close = host_port.find("]")
        if close != -1 and close + 1 < len(host_port):
            if host_port[close + 1] != ":":
                return (f"has '{host_port[close + 1:]}' after {host_port[:close + 1]} "
                        "(a port goes after ']:')")
            host, port = host_port[:close + 1], host_port[close + 2:]
    elif host_port.count(":") > 1:
        if _host_problem(f"[{host_port}]"):
            return f"has '{host_port}', not a host name or address"
        return ""
    elif ":" in host_port:
        host, port = host_port.split(":", 1)
    return _host_problem(host) or (_port_problem(port) if port is not None else "")


def _target_problem(target):
    if not target:
        return "is empty"
    for scheme in ("unix:", "unix-abstract:", "vsock:"):
        if target.startswith(scheme):
            return "" if len(target) > len(scheme) else f"has nothing after {scheme}"
    for scheme, ipv6 in (("ipv4:", False), ("ipv6:", True)):
        if target.startswith(scheme):
            # ADDR:PORT of that family: gRPC needs the port there, and no host names.
            for element in target[len(scheme):].split(","):
                if ipv6 and not (element.startswith("[") and "]:" in element):
                    return f"has '{element}', not [an IPv6 address]:PORT"
                if not ipv6 and not (":" in element and
                                     re.fullmatch(r"[0-9.]*", element.rpartition(":")[0])):
                    return f"has '{element}', not an IPv4 address:PORT"
                why = _host_port_problem(element)
                if why:
                    return why
            return ""
    if target.startswith("dns:"):
        target = target[4:]
        if target.startswith("//"):
            slash = target.find("/", 2)  # past the DNS server to ask, often empty
            if slash == -1:
                return "has no '/' after dns://AUTHORITY"
            target = target[slash + 1:]
    if re.match(r"[a-z0-9+.-]+://", target):  # another resolver's SCHEME://... (xds:///NAME)
        return ""
    return _host_port_problem(target)


def check_target(address):
    """Raises ValueError naming what is wrong with `address` as a gRPC target."""
    if not isinstance(address, str):
        raise TypeError(f"address must be a str, got {type(address).__name__}")
    why = _target_problem(address)
    if why:
        raise ValueError(f"address: '{address}' {why} (HOST:PORT, e.g. localhost:50051, or a "
                         "gRPC target: dns:///HOST:PORT, ipv4:ADDR:PORT, unix:PATH)")


def _tensor(hidden):
    """Packs a [tokens, hidden] numpy array into a Tensor message."""
    a = np.ascontiguousarray(hidden)
    if a.ndim != 2:
        raise ValueError(f"hidden must be 2-D [tokens, hidden], got shape {a.shape}")
    # The wire carries little-endian values: a big-endian array is converted, not refused
    # as an unknown dtype (np.dtype(">f4") != np.float32).
    a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    if a.dtype == np.float32:
        dtype = router_pb2.DTYPE_FP32
    elif a.dtype == np.float16:
        dtype = router_pb2.DTYPE_FP16
    elif a.dtype == np.uint16 or a.dtype.name == "bfloat16":
        dtype = router_pb2.DTYPE_BF16
    else:
        raise ValueError(f"unsupported dtype {a.dtype}: use float32, float16, or bfloat16 bits as uint16")
    return router_pb2.Tensor(dtype=dtype, shape=list(a.shape), data=a.tobytes())


def _unpack(resp):
    ids = np.asarray(resp.expert_ids, dtype=np.int32).reshape(resp.tokens, resp.top_k)
    weights = np.asarray(resp.expert_weights, dtype=np.float32).reshape(resp.tokens, resp.top_k)
    return ids, weights


def _open_channel(module, address, tls_ca, tls_cert, tls_key, tls_server_name,
                  max_message_bytes, load_balancing):
    """A channel of `module` (grpc, or grpc.aio for AsyncRouterClient) to a checked target."""
    check_target(address)
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes),
               ("grpc.keepalive_time_ms", 30000)]
    if load_balancing is not None:
        # gRPC logs an unknown name and falls back to pick_first: refused here instead.
        if load_balancing not in ("pick_first", "round_robin"):
            raise ValueError(f"load_balancing: '{load_balancing}' is not pick_first or "
                             "round_robin")
        options.append(("grpc.lb_policy_name", load_balancing))
    if tls_server_name is not None:
        # The name the server's certificate carries where the address does not (127.0.0.1,
        # a pod IP); gRPC would only fail the handshake on a malformed one.
        if tls_ca is None:
            raise ValueError("tls_server_name: needs tls_ca (the CA that signed the server's "
                             "certificate), which turns TLS on")
        why = _host_problem(tls_server_name) if tls_server_name else "is empty"
        if why:
            raise ValueError(f"tls_server_name: '{tls_server_name}' {why} (the name the "
                             "server's certificate is checked for, without a port)")
        options.append(("grpc.ssl_target_name_override", tls_server_name))
    if tls_ca is not None:
        creds = grpc.ssl_channel_credentials(tls_ca, tls_key, tls_cert)
        return module.secure_channel(address, creds, options)
    return module.insecure_channel(address, options)


def _health_check(channel):
    """grpc.health.v1.Health/Check by hand (grpcio-health-checking is not a Debian package):
    an empty request (service ""); the raw response, read by _serving."""
    return channel.unary_unary("/grpc.health.v1.Health/Check",
                               request_serializer=lambda _: b"",
                               response_deserializer=lambda b: b)


def _serving(response):
    return response[:2] == b"\x08\x01"  # field 1 (status) = SERVING (1)


def _stream_result(r):
    """A RouteStreamResponse as a StreamResult."""
    if r.HasField("error"):
        code = next(c for c in grpc.StatusCode if c.value[0] == r.error.code)
        return StreamResult(r.request_id, code=code, message=r.error.message)
    ids, weights = _unpack(r.response)
    return StreamResult(r.request_id, ids, weights)


def _route_request(model, layer, hidden, request_id, return_logits=False):
    return router_pb2.RouteRequest(model=model, layer=layer, hidden_states=_tensor(hidden),
                                   request_id=request_id, return_logits=return_logits)


def _routed(resp, return_logits):
    ids, weights = _unpack(resp)
    if return_logits:
        return ids, weights, np.asarray(resp.logits, dtype=np.float32).reshape(resp.tokens, -1)
    return ids, weights


class StreamResult:
    """One answer of route_stream: ids/weights, or code/message when that request failed."""

    def __init__(self, request_id, ids=None, weights=None, code=None, message=""):
        self.request_id, self.ids, self.weights, self.code, self.message = (
            request_id, ids, weights, code, message)

    @property
    def ok(self):
        return self.code is None


class _Client:
    """What both clients hold: a checked channel of their gRPC module, the stub, the health
    check and the calls' timeout."""

    def __init__(self, address, *, tls_ca=None, tls_cert=None, tls_key=None,
                 tls_server_name=None, max_message_bytes=64 << 20, timeout=10.0,
                 load_balancing=None):
        self._channel = _open_channel(self._grpc_module(), address, tls_ca, tls_cert, tls_key,
                                      tls_server_name, max_message_bytes, load_balancing)
        self._stub = router_pb2_grpc.RouterStub(self._channel)
        self._health_check = _health_check(self._channel)
        self._timeout = timeout

    @staticmethod
    def _grpc_module():
        return grpc


class RouterClient(_Client):
    """`address`: HOST:PORT or a gRPC target (dns:///HOST:PORT, ipv4:A:P,B:P, unix:PATH),
    checked (ValueError). `load_balancing`: None (gRPC's default, pick_first) or
    "round_robin", each call to the next ready address the target resolves to (a headless
    Service's pods, dns:///moe-router:50051). TLS: `tls_ca` (PEM bytes of the CA that signed
    the server's certificate), `tls_cert` and `tls_key` (mutual TLS), `tls_server_name` (the
    name the certificate carries, where `address` differs: 127.0.0.1, a pod IP)."""

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def route(self, model, layer, hidden, *, return_logits=False, request_id=0):
        """Routes one batch; returns (ids, weights), plus logits when return_logits."""
        req = _route_request(model, layer, hidden, request_id, return_logits)
        return _routed(self._stub.Route(req, timeout=self._timeout), return_logits)

    def route_stream(self, requests):
        """Streams (model, layer, hidden) tuples; yields a StreamResult per request, in order.

        A request the client cannot send (a bad hidden array, a malformed tuple, an exception
        from the iterable itself) ends the stream and is raised here as it was raised there,
        after the results that came before it; gRPC alone would report only "UNKNOWN:
        Exception iterating requests!"."""
        counter = itertools.count()
        failure = []

        def messages():
            try:
                for model, layer, hidden in requests:
                    yield _route_request(model, layer, hidden, next(counter))
            except Exception as e:  # gRPC's request thread would swallow it
                failure.append(e)

        try:
            for r in self._stub.RouteStream(messages()):
                yield _stream_result(r)
        except grpc.RpcError:
            if not failure:
                raise
        if failure:  # the request's own exception, not gRPC's report of it
            raise failure[0]

    def models(self):
        """The loaded models (ModelInfo messages)."""
        return list(self._stub.ListModels(router_pb2.ListModelsRequest(), timeout=self._timeout).models)

    def model(self, name):
        """One loaded model's ModelInfo (GetModel); grpc.RpcError NOT_FOUND for another name."""
        return self._stub.GetModel(router_pb2.GetModelRequest(name=name), timeout=self._timeout)

    def health(self):
        """True when the server reports SERVING."""
        return _serving(self._health_check(None, timeout=self._timeout))


class AsyncRouterClient(_Client):
    """RouterClient for asyncio code (an engine's event loop): the same calls, awaited, on a
    grpc.aio channel, so a call never blocks the loop. Create it inside the running loop.

        async with AsyncRouterClient("localhost:50051") as client:
            ids, weights = await client.route("demo-deepseek-v3", 3, hidden)
            async for r in client.route_stream(requests):   # an iterable or async iterable
                ...
    """

    @staticmethod
    def _grpc_module():
        import grpc.aio  # imported here: the blocking client does not need it

        return grpc.aio

    async def close(self):
        await self._channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def route(self, model, layer, hidden, *, return_logits=False, request_id=0):
        """Routes one batch; returns (ids, weights), plus logits when return_logits."""
        req = _route_request(model, layer, hidden, request_id, return_logits)
        return _routed(await self._stub.Route(req, timeout=self._timeout), return_logits)

    async def route_stream(self, requests):
        """Streams (model, layer, hidden) tuples from an async iterable, or an iterable (read
        on the event loop: it should not block); yields a StreamResult per request, in order.
        As RouterClient.route_stream, a request the client cannot send ends the stream and is
        raised here, after the results before it."""
        import asyncio

        call = self._stub.RouteStream()
        failure = []

        async def send():
            async def each():  # an async iterable as it is, an iterable through this
                if hasattr(requests, "__aiter__"):
                    async for r in requests:
                        yield r
                else:
                    for r in requests:
                        yield r

            request_id = 0
            try:
                async for model, layer, hidden in each():
                    await call.write(_route_request(model, layer, hidden, request_id))
                    request_id += 1
            except grpc.RpcError:
                return  # the call ended: the reader below sees why
            except Exception as e:  # the request's own: raised after the answers before it
                failure.append(e)
            try:
                await call.done_writing()
            except grpc.RpcError:
                pass

        sender = asyncio.ensure_future(send())
        try:
            async for r in call:
                yield _stream_result(r)
        finally:  # also when the caller stops iterating early: nothing left running
            if not call.done():
                call.cancel()
            if not sender.done():
                sender.cancel()
            try:
                await sender
            except asyncio.CancelledError:
                pass
        if failure:
            raise failure[0]

    async def models(self):
        """The loaded models (ModelInfo messages)."""
        resp = await self._stub.ListModels(router_pb2.ListModelsRequest(), timeout=self._timeout)
        return list(resp.models)

    async def model(self, name):
        """One loaded model's ModelInfo (GetModel); grpc.RpcError NOT_FOUND for another name."""
        return await self._stub.GetModel(router_pb2.GetModelRequest(name=name),
                                         timeout=self._timeout)

    async def health(self):
        """True when the server reports SERVING."""
        return _serving(await self._health_check(None, timeout=self._timeout))
