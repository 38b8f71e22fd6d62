"""The Python client against the real moe-router-server (CPU backend) on loopback.

Run by ctest with PYTHONPATH holding client/python and the generated modules, and
MOE_SERVER_BINARY naming the server. Routing is checked against the logits the server
returns (ids = the family's choice over them, weights recomputed in numpy), so the test
covers packing, unpacking and every dtype end to end.
"""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import grpc
import numpy as np

from moe_router_client import AsyncRouterClient, RouterClient, check_target


def bf16_bits(a):
    """float32 -> bfloat16 bits (round to nearest even) as uint16."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def start_server(tmp, models, layers=2, wait_serving=True, listen="127.0.0.1:0", extra_args=(),
                 **client_options):
    """A CPU-backend server on `listen` (a free loopback port): (process, address, client), serving
    (or, without wait_serving, listening: its models may still be loading). `extra_args` go to
    the server, `client_options` to the RouterClient."""
    port_file = os.path.join(tmp, "ports")
    if os.path.exists(port_file):
        os.remove(port_file)
    with open(os.path.join(tmp, "server.log"), "w") as log:  # the child keeps its own copy
        server = subprocess.Popen(
            [os.environ["MOE_SERVER_BINARY"], "--model=" + models, f"--demo_layers={layers}",
             "--address=" + listen, "--metrics_address=", "--cpu_threads=2",
             "--port_file=" + port_file, *extra_args], stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(600):
        if os.path.exists(port_file) and os.path.getsize(port_file) > 0:
            break
        time.sleep(0.05)
    with open(port_file) as f:
        port = f.read().split()[0]
    address = listen if listen.startswith("unix:") else f"127.0.0.1:{port}"
    client = RouterClient(address, **client_options)
    for _ in range(600 if wait_serving else 0):
        try:
            if client.health():
                break
        except grpc.RpcError:
            pass
        time.sleep(0.05)
    return server, address, client


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()
        cls.server, cls.address, cls.client = start_server(cls.tmp, "demo-mixtral,demo-gpt-oss-20b")

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.server.send_signal(signal.SIGTERM)
        cls.server.wait(timeout=30)

    def test_health_and_models(self):
        self.assertTrue(self.client.health())
        names = sorted(m.name for m in self.client.models())
        self.assertEqual(names, ["demo-gpt-oss-20b", "demo-mixtral"])
        info = self.client.model("demo-mixtral")
        self.assertEqual((info.name, info.experts, info.hidden, info.top_k), ("demo-mixtral", 8, 4096, 2))
        with self.assertRaises(grpc.RpcError) as caught:
            self.client.model("nope")
        self.assertEqual(caught.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_mixtral_every_dtype(self):
        rng = np.random.default_rng()
        x = rng.standard_normal((5, 4096)).astype(np.float32)
        for hidden in (x, x.astype(np.float16), bf16_bits(x)):
            ids, weights, logits = self.client.route("demo-mixtral", 1, hidden, return_logits=True)
            self.assertEqual(ids.shape, (5, 2))
            self.assertEqual(ids.dtype, np.int32)
            self.assertEqual(weights.dtype, np.float32)
            self.assertEqual(logits.shape, (5, 8))
            for t in range(5):
                order = sorted(range(8), key=lambda e: (-logits[t, e], e))[:2]
                self.assertEqual(list(ids[t]), order)
                chosen = logits[t, order].astype(np.float64)
                want = np.exp(chosen - chosen.max())
                want /= want.sum()
                np.testing.assert_allclose(weights[t], want, rtol=1e-4)
        # Big-endian arrays and Fortran-ordered views: the same values on the wire, so the
        # same answer to the bit as the native array of that dtype.
        for native, other in ((x, x.astype(">f4")), (x.astype(np.float16), x.astype(">f2")),
                              (bf16_bits(x), bf16_bits(x).astype(">u2")),
                              (x, np.asfortranarray(x))):
            want_ids, want_weights = self.client.route("demo-mixtral", 1, native)
            ids, weights = self.client.route("demo-mixtral", 1, other)
            np.testing.assert_array_equal(ids, want_ids, err_msg=other.dtype.str)
            np.testing.assert_array_equal(weights, want_weights, err_msg=other.dtype.str)

    def test_gpt_oss_topk_then_softmax(self):
        x = np.random.default_rng().standard_normal((3, 2880)).astype(np.float32)
        ids, weights, logits = self.client.route("demo-gpt-oss-20b", 0, x, return_logits=True)
        for t in range(3):
            order = sorted(range(32), key=lambda e: (-logits[t, e], e))[:4]
            self.assertEqual(list(ids[t]), order)
            self.assertAlmostEqual(float(weights[t].sum()), 1.0, places=5)

    def test_errors_carry_code_and_field(self):
        with self.assertRaises(grpc.RpcError) as e:
            self.client.route("demo-mixtral", 0, np.zeros((2, 100), np.float32))
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("hidden_states.shape[1]", e.exception.details())
        with self.assertRaises(grpc.RpcError) as e:
            self.client.route("nope", 0, np.zeros((1, 4096), np.float32))
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        bad = np.zeros((1, 4096), np.float32)
        bad[0, 7] = np.nan
        with self.assertRaises(grpc.RpcError) as e:
            self.client.route("demo-mixtral", 0, bad)
        self.assertIn("not finite", e.exception.details())
        with self.assertRaises(ValueError):
            self.client.route("demo-mixtral", 0, np.zeros(4096, np.float32))

    def test_stream_in_order_with_a_failing_request(self):
        rng = np.random.default_rng()
        reqs = [("demo-mixtral", i % 2, rng.standard_normal((1 + i % 3, 4096)).astype(np.float32))
                for i in range(12)]
        reqs[4] = ("demo-mixtral", 9, reqs[4][2])  # no such layer: fails alone
        results = list(self.client.route_stream(iter(reqs)))
        self.assertEqual([r.request_id for r in results], list(range(12)))
        for i, r in enumerate(results):
            if i == 4:
                self.assertFalse(r.ok)
                self.assertEqual(r.code, grpc.StatusCode.NOT_FOUND)
            else:
                self.assertTrue(r.ok, r.message)
                want_ids, _ = self.client.route(*reqs[i])
                np.testing.assert_array_equal(r.ids, want_ids)

    def test_stream_raises_what_its_requests_raise(self):
        # A request the client cannot send ends the stream after the results before it, and
        # its own exception is raised (gRPC alone said "UNKNOWN: Exception iterating
        # requests!" and dropped the results).
        good = ("demo-mixtral", 0, np.zeros((1, 4096), np.float32))
        results = []
        with self.assertRaisesRegex(ValueError, "hidden must be 2-D"):
            for r in self.client.route_stream(iter([good, ("demo-mixtral", 0, np.zeros((1, 1, 4096)))])):
                results.append(r.ok)
        self.assertEqual(results, [True])

        def failing_source():
            yield good
            raise RuntimeError("the source failed")

        results = []
        with self.assertRaisesRegex(RuntimeError, "the source failed"):
            for r in self.client.route_stream(failing_source()):
                results.append(r.ok)
        self.assertEqual(results, [True])
        # The client goes on working.
        self.assertEqual([r.ok for r in self.client.route_stream(iter([good, good]))], [True, True])

    def test_async_client_routes_as_the_blocking_one(self):
        # AsyncRouterClient (grpc.aio) against the same server: the answers equal the
        # blocking client's, errors carry their codes, and streams keep order and raise what
        # their requests raise after the results before them.
        rng = np.random.default_rng()
        reqs = [("demo-mixtral", i % 2, rng.standard_normal((1 + i % 3, 4096)).astype(np.float32))
                for i in range(8)]
        reqs[3] = ("demo-mixtral", 9, reqs[3][2])  # no such layer: fails alone
        good = ("demo-mixtral", 0, np.zeros((1, 4096), np.float32))

        async def scenario():
            async with AsyncRouterClient(self.address) as client:
                self.assertTrue(await client.health())
                self.assertEqual(sorted(m.name for m in await client.models()),
                                 ["demo-gpt-oss-20b", "demo-mixtral"])
                self.assertEqual((await client.model("demo-mixtral")).experts, 8)
                ids, weights, logits = await client.route(*reqs[0], return_logits=True)
                want = self.client.route(*reqs[0], return_logits=True)
                for got, expected in zip((ids, weights, logits), want):
                    np.testing.assert_array_equal(got, expected)
                with self.assertRaises(grpc.RpcError) as caught:
                    await client.route(*reqs[3])
                self.assertEqual(caught.exception.code(), grpc.StatusCode.NOT_FOUND)
                # Concurrent calls on one loop.
                answers = await asyncio.gather(*(client.route(*r) for i, r in enumerate(reqs)
                                                 if i != 3))
                for (model, layer, x), (got, _) in zip([r for i, r in enumerate(reqs) if i != 3],
                                                       answers):
                    np.testing.assert_array_equal(got, self.client.route(model, layer, x)[0])

                async def async_source():
                    for r in reqs:
                        await asyncio.sleep(0)
                        yield r

                for source in (iter(reqs), async_source()):
                    results = [r async for r in client.route_stream(source)]
                    self.assertEqual([r.request_id for r in results], list(range(8)))
                    for i, r in enumerate(results):
                        if i == 3:
                            self.assertEqual(r.code, grpc.StatusCode.NOT_FOUND)
                        else:
                            self.assertTrue(r.ok, r.message)
                            np.testing.assert_array_equal(r.ids, self.client.route(*reqs[i])[0])

                async def failing_source():
                    yield good
                    raise RuntimeError("the source failed")

                for source, error in ((iter([good, ("demo-mixtral", 0, np.zeros((1, 1, 4096)))]),
                                       "hidden must be 2-D"),
                                      (failing_source(), "the source failed")):
                    seen = []
                    with self.assertRaisesRegex((ValueError, RuntimeError), error):
                        async for r in client.route_stream(source):
                            seen.append(r.ok)
                    self.assertEqual(seen, [True])
                # Stopping early leaves the client working.
                async for r in client.route_stream(iter([good] * 50)):
                    break
                self.assertEqual([r.ok async for r in client.route_stream([good, good])],
                                 [True, True])
            with self.assertRaisesRegex(ValueError, "has port 70000, outside 1..65535"):
                AsyncRouterClient("localhost:70000")

        asyncio.run(scenario())

    def test_cli_routes_npy_files_and_reports_errors(self):
        cli = os.environ["MOE_CLI_BINARY"]
        x = np.random.default_rng().standard_normal((3, 4096)).astype(np.float32)
        path = os.path.join(self.tmp, "h.npy")
        np.save(path, x)
        out = subprocess.run([cli, "--address", self.address, "route", "demo-mixtral", "--layer", "1",
                              "--npy", path], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        want_ids, want_w = self.client.route("demo-mixtral", 1, x)
        for t in range(3):
            line = next(l for l in out.stdout.splitlines() if l.startswith(f"token {t}:"))
            got = [int(tok.split("(")[0]) for tok in line.split(":")[1].split()]
            self.assertEqual(got, list(want_ids[t]))
        np.save(path, np.zeros((2, 100), np.float32))
        out = subprocess.run([cli, "--address", self.address, "route", "demo-mixtral", "--npy", path],
                             capture_output=True, text=True, timeout=60)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("100 columns", out.stderr)
        out = subprocess.run([cli, "--address", "127.0.0.1:1", "models"], capture_output=True,
                             text=True, timeout=60)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("cannot reach the server", out.stderr)
        # Commands it does not know, or with the wrong arguments: named, exit 2.
        for argv, message in ((["bogus"], "unknown command 'bogus'"),
                              (["models", "x"], "models takes no arguments"),
                              (["route"], "route takes one MODEL (got 0 arguments)"),
                              (["route", "a", "b"], "route takes one MODEL (got 2 arguments)")):
            out = subprocess.run([cli, "--address", self.address, *argv], capture_output=True,
                                 text=True, timeout=60)
            self.assertEqual(out.returncode, 2, (argv, out.stderr))
            self.assertIn(message, out.stderr)
        # The server's refusals carry the status code's name and its message.
        out = subprocess.run([cli, "--address", self.address, "route", "demo-mixtral", "--layer",
                              "9"], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertIn("moe-router: NOT_FOUND: layer: 9 does not exist", out.stderr)
        # Integer options are whole numbers in range, refused by name before anything is
        # sent (a huge --tokens used to abort the CLI building its random hidden states).
        for option, value, expected in (("--tokens", "abc", "1..256"),
                                        ("--tokens", "100000000", "1..256"),
                                        ("--tokens", "0", "1..256"),
                                        ("--layer", "1x", "0..2147483647"),
                                        ("--layer", "-1", "0..2147483647"),
                                        ("--seed", "-5", "0..4294967295")):
            out = subprocess.run([cli, "--address", self.address, "route", "demo-mixtral", option,
                                  value], capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 2, (option, value, out.stderr))
            self.assertIn(f"{option}: '{value}' is not a whole number in {expected}", out.stderr)
        version = subprocess.run([cli, "--version"], capture_output=True, text=True, timeout=60)
        self.assertEqual(version.returncode, 0)
        self.assertTrue(version.stdout.startswith("moe-router "), version.stdout)

    def test_load_generator_refuses_what_the_model_cannot_take(self):
        bench = os.environ["MOE_BENCH_BINARY"]

        def run(*flags):
            return subprocess.run([bench, "--address", self.address, "--model", "demo-mixtral",
                                   "--progress=false", "--warmup_s=0", *flags],
                                  capture_output=True, text=True, timeout=60)

        # The server loads 2 demo layers and takes up to 256 tokens a request: more is refused
        # before any request is built (a huge --tokens used to abort on the allocation).
        for flags, message in ((["--layers=3"], "--layers: 3 is more than model 'demo-mixtral' has (2)"),
                               (["--tokens=257"], "--tokens: 257 is more than model 'demo-mixtral' takes"),
                               (["--tokens=100000000"], "--tokens: 100000000 is more than")):
            out = run("--duration_s=0.2", *flags)
            self.assertEqual(out.returncode, 1, (flags, out.stderr))
            self.assertIn(message, out.stderr)
        # The options' own checks: exit 2, the flag named.
        for flags, message in ((["--concurrency=0"], "--concurrency: 0 is outside 1..4096"),
                               (["--concurrency=100000"], "--concurrency: 100000 is outside"),
                               (["--duration_s=nan"], "--duration_s: nan is outside"),
                               (["--rate=-5", "--duration_s=0.2"], "--rate: -5 is outside")):
            out = run(*flags)
            self.assertEqual(out.returncode, 2, (flags, out.stderr))
            self.assertIn(message, out.stderr)
        # Both layers, a short run without errors.
        report = os.path.join(self.tmp, "bench.json")
        out = run("--layers=2", "--tokens=3", "--concurrency=2", "--duration_s=0.3",
                  f"--json={report}")
        self.assertEqual(out.returncode, 0, out.stderr)
        with open(report) as f:
            result = json.load(f)
        self.assertGreater(result["ok"], 0)
        self.assertEqual(result["errors"], {})
        self.assertFalse(result["stopped_early"])

    def test_server_listens_on_a_unix_socket(self):
        # --address=unix:PATH (documented in --help), served and routed like TCP; the log
        # names the socket, not gRPC's stand-in port 1.
        tmp = tempfile.mkdtemp()
        socket_path = os.path.join(tmp, "moe.sock")
        server, address, client = start_server(tmp, "demo-mixtral", listen="unix:" + socket_path)
        try:
            self.assertTrue(client.health())
            ids, weights = client.route("demo-mixtral", 1, np.ones((3, 4096), np.float32))
            self.assertEqual(ids.shape, (3, 2))
            out = subprocess.run([os.environ["MOE_CLI_BINARY"], "--address", address, "health"],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
        finally:
            client.close()
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        self.assertEqual(server.returncode, 0)
        with open(os.path.join(tmp, "server.log")) as f:
            self.assertIn(f"serving gRPC on unix:{socket_path}, metrics off", f.read())

    def test_round_robin_spreads_calls_over_the_targets_addresses(self):
        # Two servers, one target: a layer only the second has tells which one answered.
        # The headless Service's client-side balancing (deploy/k8s) is this, by DNS.
        tmp = tempfile.mkdtemp()
        servers = [start_server(tmp, "demo-mixtral", layers=n) for n in (2, 4)]
        try:
            target = "ipv4:" + ",".join(address for _, address, _ in servers)
            x = np.ones((1, 4096), np.float32)

            def outcomes(client, calls):
                seen = {"ok": 0, "not_found": 0}
                for _ in range(calls):
                    try:
                        client.route("demo-mixtral", 3, x)
                        seen["ok"] += 1
                    except grpc.RpcError as e:
                        self.assertEqual(e.code(), grpc.StatusCode.NOT_FOUND, e.details())
                        seen["not_found"] += 1
                return seen

            with RouterClient(target, load_balancing="round_robin") as client:
                seen = outcomes(client, 60)
            self.assertGreaterEqual(seen["ok"], 10, seen)
            self.assertGreaterEqual(seen["not_found"], 10, seen)
            # gRPC's default, pick_first: every call to the first address while it is up.
            for balancing in (None, "pick_first"):
                with RouterClient(target, load_balancing=balancing) as client:
                    self.assertEqual(outcomes(client, 20), {"ok": 0, "not_found": 20})
            with self.assertRaisesRegex(ValueError, "load_balancing: 'grpclb' is not pick_first "
                                                    "or round_robin"):
                RouterClient(target, load_balancing="grpclb")
            # The CLI and the load generator name a policy gRPC would have replaced with
            # pick_first (it only logs that).
            for argv in ([os.environ["MOE_CLI_BINARY"], "--address", target,
                          "--load_balancing", "foo", "health"],
                         [os.environ["MOE_BENCH_BINARY"], "--address", target,
                          "--load_balancing", "foo"]):
                out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
                self.assertEqual(out.returncode, 2, (argv, out.stderr))
                self.assertIn("--load_balancing: 'foo' is not pick_first or round_robin",
                              out.stderr)
            out = subprocess.run([os.environ["MOE_CLI_BINARY"], "--address", target,
                                  "--load_balancing", "round_robin", "health"],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
        finally:
            for server, _, client in servers:
                client.close()
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=60)

    @unittest.skipIf(shutil.which("openssl") is None, "no openssl")
    def test_cli_and_load_generator_speak_mutual_tls(self):
        # A server started with --tls_cert/--tls_key/--tls_client_ca: the CLI and the load
        # generator reach it with --tls_ca/--tls_cert/--tls_key (they had no TLS flags). Its
        # certificate names only moe-router.test, as a real one names a DNS name, not the
        # 127.0.0.1 (or pod IP) it is reached at: --tls_server_name says which name to check.
        tmp = tempfile.mkdtemp()
        subprocess.run(
            "set -e; openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem "
            "-days 1 -subj /CN=test-ca; "
            "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
            "-subj /CN=localhost; "
            "printf 'subjectAltName=DNS:moe-router.test' > san.ext; "
            "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
            "-out server.pem -days 1 -extfile san.ext; "
            "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=client; "
            "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
            "-out client.pem -days 1", shell=True, cwd=tmp, check=True, capture_output=True)
        pem = {name: os.path.join(tmp, name) for name in ("ca.pem", "client.pem", "client.key")}
        with open(pem["ca.pem"], "rb") as ca, open(pem["client.pem"], "rb") as cert, \
                open(pem["client.key"], "rb") as key:
            tls = {"tls_ca": ca.read(), "tls_cert": cert.read(), "tls_key": key.read(),
                   "tls_server_name": "moe-router.test"}
        server, address, client = start_server(
            tmp, "demo-mixtral", extra_args=(f"--tls_cert={tmp}/server.pem",
                                             f"--tls_key={tmp}/server.key",
                                             f"--tls_client_ca={tmp}/ca.pem"), **tls)
        cli, bench = os.environ["MOE_CLI_BINARY"], os.environ["MOE_BENCH_BINARY"]
        flags = ["--tls_ca", pem["ca.pem"], "--tls_cert", pem["client.pem"],
                 "--tls_key", pem["client.key"], "--tls_server_name", "moe-router.test"]
        try:
            self.assertTrue(client.health())
            out = subprocess.run([cli, "--address", address, *flags, "route", "demo-mixtral",
                                  "--tokens", "2"], capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("token 1:", out.stdout)
            out = subprocess.run([bench, "--address", address, *flags, "--model", "demo-mixtral",
                                  "--warmup_s=0", "--duration_s=0.3", "--progress=false"],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("errors: none", out.stdout)
            # Without the client certificate the server refuses the handshake; without the
            # server name the client refuses the certificate (it names no 127.0.0.1).
            for leave_out in (slice(2, 6), slice(6, 8)):
                argv = flags[:leave_out.start] + flags[leave_out.stop:]
                out = subprocess.run([cli, "--address", address, *argv, "health"],
                                     capture_output=True, text=True, timeout=60)
                self.assertEqual(out.returncode, 1, (argv, out.stderr))
                self.assertIn("cannot reach the server", out.stderr)
            del tls["tls_server_name"]
            with RouterClient(address, **tls, timeout=5) as unnamed:
                with self.assertRaises(grpc.RpcError) as failed:
                    unnamed.health()
                self.assertEqual(failed.exception.code(), grpc.StatusCode.UNAVAILABLE)
        finally:
            client.close()
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        # Flags that cannot make a TLS channel: refused by name before anything is sent.
        not_pem = os.path.join(tmp, "san.ext")
        for argv, message in (
                (["--tls_cert", pem["client.pem"]],
                 "--tls_cert: --tls_cert and --tls_key go together"),
                (["--tls_cert", pem["client.pem"], "--tls_key", pem["client.key"]],
                 "--tls_cert: needs --tls_ca"),
                (["--tls_ca", os.path.join(tmp, "missing.pem")],
                 f"--tls_ca: cannot read '{tmp}/missing.pem'"),
                (["--tls_ca", tmp], f"--tls_ca: cannot read '{tmp}'"),
                (["--tls_ca", not_pem], f"--tls_ca: '{not_pem}' holds no PEM block"),
                (["--tls_server_name", "moe-router.test"], "--tls_server_name: needs --tls_ca"),
                (["--tls_ca", pem["ca.pem"], "--tls_server_name", "moe-router.test:443"],
                 "--tls_server_name: 'moe-router.test:443' has 'moe-router.test:443', not a "
                 "host name or address")):
            for binary, command in ((cli, ["health"]), (bench, [])):
                out = subprocess.run([binary, "--address", address, *argv, *command],
                                     capture_output=True, text=True, timeout=60)
                self.assertEqual(out.returncode, 2, (binary, argv, out.stderr))
                self.assertIn(message, out.stderr)
        # The Python clients refuse the same.
        for client_class in (RouterClient, AsyncRouterClient):
            with self.assertRaisesRegex(ValueError, "tls_server_name: needs tls_ca"):
                client_class(address, tls_server_name="moe-router.test")
            for name in ("moe-router.test:443", "", "a b"):
                with self.assertRaisesRegex(ValueError, f"tls_server_name: '{name}' "):
                    client_class(address, tls_ca=tls["tls_ca"], tls_server_name=name)

    def test_load_generator_waits_for_a_server_loading_its_models(self):
        # The server listens (NOT_SERVING, no models listed) before its models are loaded: the
        # load generator waits for SERVING, where it said the model "is not loaded".
        bench = os.environ["MOE_BENCH_BINARY"]
        tmp = tempfile.mkdtemp()
        server, address, client = start_server(tmp, "demo-kimi-k2,demo-deepseek-v3", layers=40,
                                               wait_serving=False)
        client.close()
        try:
            out = subprocess.run([bench, "--address", address, "--model", "demo-deepseek-v3",
                                  "--warmup_s=0", "--duration_s=0.3", "--give_up_s=120"],
                                 capture_output=True, text=True, timeout=180)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(f"moe-router-bench: waiting up to 120 s for the server at {address} "
                      "(not serving yet)", out.stderr)
        self.assertIn("errors: none", out.stdout)
        # Nothing listening: refused after --give_up_s, the address and gRPC's reason named.
        begin = time.monotonic()
        out = subprocess.run([bench, "--address", "127.0.0.1:1", "--give_up_s=0.5"],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertIn("cannot reach the server at 127.0.0.1:1 after 0.", out.stderr)
        self.assertIn("UNAVAILABLE: ", out.stderr)
        self.assertLess(time.monotonic() - begin, 30)

    def test_load_generator_stops_when_the_server_dies(self):
        # A server of its own, killed mid-run: the load generator backs off and stops once no
        # call has reached it for --give_up_s, with the report so far and exit 1. It used to
        # spin through ~200k fast UNAVAILABLE failures a second to the run's end.
        tmp = tempfile.mkdtemp()
        server, address, client = start_server(tmp, "demo-mixtral")
        client.close()
        report = os.path.join(tmp, "bench.json")
        for mode in ([], ["--stream"], ["--rate=2000"]):
            if server.poll() is not None:
                server, address, client = start_server(tmp, "demo-mixtral")
                client.close()
            begin = time.monotonic()
            bench = subprocess.Popen(
                [os.environ["MOE_BENCH_BINARY"], "--address", address, "--model", "demo-mixtral",
                 "--progress=false", "--warmup_s=0", "--duration_s=120", "--give_up_s=1",
                 "--concurrency=4", f"--json={report}", *mode],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(1.5)
            server.kill()
            server.wait(timeout=30)
            out, err = bench.communicate(timeout=60)
            took = time.monotonic() - begin
            self.assertEqual(bench.returncode, 1, (mode, err))
            self.assertIn(f"stopped early: the server at {address} was unreachable for 1.", err)
            self.assertIn("UNAVAILABLE", err)
            self.assertLess(took, 30, mode)
            with open(report) as f:
                result = json.load(f)
            self.assertTrue(result["stopped_early"], mode)
            self.assertGreater(result["ok"], 0, mode)  # what ran before is reported
            self.assertLess(result["seconds"], 30, mode)
            self.assertIn("UNAVAILABLE", result["errors"], mode)
            # Backed off: 4 callers at 1 ms doubling to 100 ms make ~100 calls in the second
            # before the stop (the open loop keeps its schedule: ~2000); a spin made 100k+.
            limit = 4000 if mode == ["--rate=2000"] else 400
            self.assertLess(result["errors"]["UNAVAILABLE"], limit, (mode, result["errors"]))
            self.assertIn("ok in", out)


class TargetCheckTest(unittest.TestCase):
    """The clients' --address check without a server: tests/target_addresses.tsv, the table
    the C++ check (target_address_test) is held to, through the Python client, the CLI and
    the load generator. gRPC sent localhost:70000 and localhost:4464x to port 4464."""

    def test_python_client_follows_the_shared_table(self):
        table = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                             "target_addresses.tsv")
        with open(table) as f:
            cases = [line.rstrip("\n").split("\t", 1) for line in f
                     if line.strip("\n") and not line.startswith("#")]
        self.assertGreaterEqual(len(cases), 30)  # the table was read
        for target, why in cases:
            if not why:
                check_target(target)
                RouterClient(target).close()  # no connection yet: channels connect lazily
                continue
            with self.assertRaises(ValueError, msg=target) as caught:
                RouterClient(target)
            self.assertTrue(str(caught.exception).startswith(f"address: '{target}' {why} ("),
                            (target, str(caught.exception)))
        with self.assertRaisesRegex(TypeError, "address must be a str, got int"):
            RouterClient(50051)

    def test_cli_and_load_generator_refuse_a_bad_address_by_name(self):
        for binary in (os.environ["MOE_CLI_BINARY"], os.environ["MOE_BENCH_BINARY"]):
            argv = [binary, "--address", "localhost:70000"]
            if binary == os.environ["MOE_CLI_BINARY"]:
                argv.append("health")
            out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 2, (binary, out.stderr))
            self.assertIn("--address: 'localhost:70000' has port 70000, outside 1..65535",
                          out.stderr)


if __name__ == "__main__":
    unittest.main()
