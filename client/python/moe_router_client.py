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

import itertools

import grpc
import numpy as np

from moe_router.v1 import router_pb2, router_pb2_grpc

__all__ = ["RouterClient", "StreamResult"]


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
    def __init__(self, address, *, tls_ca=None, tls_cert=None, tls_key=None,
                 max_message_bytes=64 << 20, timeout=10.0):
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.keepalive_time_ms", 30000)]
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

    def health(self):
        """True when the server reports SERVING."""
        resp = self._health_check(None, timeout=self._timeout)
        return resp[:2] == b"\x08\x01"  # status = SERVING (1)
