"""Python client for moe-router-server (moe_router.v1), for inference stacks.

    from moe_router_client import RouterClient
    client = RouterClient("localhost:50051")
    ids, weights = client.route("demo-deepseek-v3", layer=3, hidden=hidden_states)

`hidden` is a numpy array [tokens, hidden]: float32, float16, or bfloat16 given as a
uint16 view of the bits (or an ml_dtypes bfloat16 array). Returns (ids int32 [tokens,
top_k], weights float32 [tokens, top_k]). Errors raise grpc.RpcError with the server's
status code and message (e.g. INVALID_ARGUMENT naming the field).

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

__all__ = ["RouterClient", "StreamResult", "check_target"]


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


class StreamResult:
    """One answer of route_stream: ids/weights, or code/message when that request failed."""

    def __init__(self, request_id, ids=None, weights=None, code=None, message=""):
        self.request_id, self.ids, self.weights, self.code, self.message = (
            request_id, ids, weights, code, message)

    @property
    def ok(self):
        return self.code is None


class RouterClient:
    """`address`: HOST:PORT or a gRPC target (dns:///HOST:PORT, ipv4:A:P,B:P, unix:PATH),
    checked (ValueError). `load_balancing`: None (gRPC's default, pick_first) or
    "round_robin", each call to the next ready address the target resolves to (a headless
    Service's pods, dns:///moe-router:50051)."""

    def __init__(self, address, *, tls_ca=None, tls_cert=None, tls_key=None,
                 max_message_bytes=64 << 20, timeout=10.0, load_balancing=None):
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
        if tls_ca is not None:
            creds = grpc.ssl_channel_credentials(tls_ca, tls_key, tls_cert)
            self._channel = grpc.secure_channel(address, creds, options)
        else:
            self._channel = grpc.insecure_channel(address, options)
        self._stub = router_pb2_grpc.RouterStub(self._channel)
        # grpc.health.v1.Health/Check by hand (grpcio-health-checking is not a Debian
        # package): an empty request (service ""), and the response's field 1 (status).
        self._health_check = self._channel.unary_unary(
            "/grpc.health.v1.Health/Check", request_serializer=lambda _: b"",
            response_deserializer=lambda b: b)
        self._timeout = timeout

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def route(self, model, layer, hidden, *, return_logits=False, request_id=0):
        """Routes one batch; returns (ids, weights), plus logits when return_logits."""
        req = router_pb2.RouteRequest(model=model, layer=layer, hidden_states=_tensor(hidden),
                                      request_id=request_id, return_logits=return_logits)
        resp = self._stub.Route(req, timeout=self._timeout)
        ids, weights = _unpack(resp)
        if return_logits:
            logits = np.asarray(resp.logits, dtype=np.float32).reshape(resp.tokens, -1)
            return ids, weights, logits
        return ids, weights

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
                    yield router_pb2.RouteRequest(model=model, layer=layer,
                                                  hidden_states=_tensor(hidden),
                                                  request_id=next(counter))
            except Exception as e:  # gRPC's request thread would swallow it
                failure.append(e)

        try:
            for r in self._stub.RouteStream(messages()):
                if r.HasField("error"):
                    yield StreamResult(r.request_id, code=grpc.StatusCode(
                        next(c for c in grpc.StatusCode if c.value[0] == r.error.code)),
                        message=r.error.message)
                else:
                    ids, weights = _unpack(r.response)
                    yield StreamResult(r.request_id, ids, weights)
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
        resp = self._health_check(None, timeout=self._timeout)
        return resp[:2] == b"\x08\x01"  # status = SERVING (1)
