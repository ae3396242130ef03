#!/usr/bin/python3
"""HTTP tests of `mnist serve` against real servers on 127.0.0.1, started and stopped here.

Usage: tests/serve_http.py MNIST MODEL_A MODEL_B TMPDIR   (run by tests/test_serve.sh)

Every endpoint; every error status (400, 404, 405, 413, 415, 431, 503); a body of exactly
--max-body and one byte over, by Content-Length and chunked; concurrent clients against serial
answers; an ensemble against its members; a slow client that must not hold the only worker; a
connection limit; clean shutdown on SIGTERM and SIGINT; bad flags. Only the standard library:
raw sockets where http.client would hide what is sent.
"""
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

MNIST, MODEL_A, MODEL_B, TMP = sys.argv[1:5]
PASS = FAIL = 0


def check(what, ok, detail=""):
    global PASS, FAIL
    if ok:
        PASS += 1
        print(f"  ok    {what}")
    else:
        FAIL += 1
        print(f"  FAIL  {what}{': ' + str(detail) if detail else ''}")


# ---- data -------------------------------------------------------------------------------------

def mnist_test_digits(n):
    with open("data/mnist/t10k-images-idx3-ubyte", "rb") as f:
        data = f.read(16 + 784 * n)[16:]
    with open("data/mnist/t10k-labels-idx1-ubyte", "rb") as f:
        labels = f.read(8 + n)[8:]
    return [list(data[i * 784:(i + 1) * 784]) for i in range(n)], list(labels)


def png_gray(px, w, h):
    """8-bit grayscale PNG of px (h*w values)."""
    raw = b"".join(b"\0" + bytes(px[y * w:(y + 1) * w]) for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def canvas_png(digit, scale=10):
    """A 280x280 canvas like the page sends: the 28x28 digit enlarged, white on black."""
    w = 28 * scale
    px = [digit[(y // scale) * 28 + x // scale] for y in range(w) for x in range(w)]
    return png_gray(px, w, w)


# ---- a server ---------------------------------------------------------------------------------

class Server:
    def __init__(self, *args, models=(MODEL_A,)):
        cmd = [MNIST, "serve", "--port", "0"]
        for m in models:
            cmd += ["--model", m]
        self.p = subprocess.Popen(cmd + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        line = self.p.stdout.readline()  # the URL line; the server prints it when listening
        if "http://" not in line:
            self.p.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.p.stderr.read()!r}")
        self.url = line.split()[2]
        self.port = int(self.url.rsplit(":", 1)[1].strip("/"))

    def stop(self, sig=signal.SIGTERM, timeout=10):
        self.p.send_signal(sig)
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return None, "did not stop"
        return rc, self.p.stderr.read()

    def request(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, dict(r.getheaders()), data

    def predict_json(self, px):
        return self.request("POST", "/api/predict", json.dumps({"pixels": px}),
                            {"Content-Type": "application/json"})

    def raw(self, data, wait=5.0):
        """Send bytes on a new connection; return everything read until close or wait."""
        s = socket.create_connection(("127.0.0.1", self.port))
        s.sendall(data)
        s.settimeout(wait)
        out = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                out += d
        except (socket.timeout, ConnectionResetError):
            pass
        s.close()
        return out


def status_of(raw):
    try:
        return int(raw.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def error_of(data):
    try:
        return json.loads(data)["error"]
    except (ValueError, KeyError, TypeError):
        return None


# ---- the tests --------------------------------------------------------------------------------

def test_endpoints(s, digits, labels):
    st, h, body = s.request("GET", "/")
    check("GET / serves the page (HTML, CSP, no external resources)",
          st == 200 and h.get("Content-Type", "").startswith("text/html") and b"<canvas" in body
          and "default-src 'none'" in h.get("Content-Security-Policy", "")
          and b"src=\"http" not in body and b"href=\"http" not in body, (st, h))
    st, h, body = s.request("HEAD", "/")
    check("HEAD / has no body", st == 200 and body == b"", st)
    st, _, body = s.request("GET", "/healthz")
    check("GET /healthz", st == 200 and body == b"ok\n", (st, body))
    st, h, body = s.request("GET", "/api/model")
    m = json.loads(body) if st == 200 else {}
    check("GET /api/model: spec, parameters, classes, metadata, typicality",
          m.get("classes") == [str(i) for i in range(10)] and m.get("parameters", 0) > 0
          and "conv" in m.get("spec", "") and len(m.get("models", [])) == 1
          and "date" in m["models"][0].get("meta", {}) and m["models"][0].get("typicality") is True, m)
    # pixels as JSON: the same answer as the model's own argmax, and the input echoed
    st, _, body = s.predict_json(digits[0])
    r = json.loads(body) if st == 200 else {}
    check("POST /api/predict, JSON pixels: label, confidence, top, probs, input, model",
          st == 200 and r["label"] == labels[0] and r["input"] == digits[0]
          and len(r["probs"]) == 10 and abs(sum(r["probs"]) - 1) < 1e-4
          and r["top"][0]["label"] == r["label"] and r["confidence"] == r["top"][0]["p"]
          and r["confidence"] == max(r["probs"]) and r["model"] == m.get("fingerprint"),
          (st, body[:200]))
    # a 280x280 canvas PNG goes through the preprocessing
    st, _, body = s.request("POST", "/api/predict", canvas_png(digits[1]),
                            {"Content-Type": "image/png"})
    r = json.loads(body) if st == 200 else {}
    check("POST /api/predict, 280x280 PNG canvas: classified, the 28x28 it saw returned",
          st == 200 and r["label"] == labels[1] and len(r["input"]) == 784
          and max(r["input"]) == 255, (st, body[:200]))
    st, h, body = s.request("GET", "/metrics")
    text = body.decode()
    check("GET /metrics: Prometheus text with requests by code, latency histogram",
          st == 200 and 'mnist_http_requests_total{code="200"}' in text
          and 'mnist_http_request_duration_seconds_bucket{le="+Inf"}' in text
          and "mnist_predictions_total 2" in text and h["Content-Type"].startswith("text/plain"),
          text[:300])


def same_as_predict_cli(s, digits, labels):
    """An image gets the label, confidence and 28x28 input `mnist predict` gives it."""
    path = os.path.join(TMP, "canvas.png")
    with open(path, "wb") as f:
        f.write(canvas_png(digits[2]))
    out = subprocess.run([MNIST, "predict", "--model", MODEL_A, "--json", "--save-preprocessed",
                          TMP, path], capture_output=True, text=True)
    cli = json.loads(out.stdout)
    st, _, body = s.request("POST", "/api/predict", open(path, "rb").read(),
                            {"Content-Type": "application/octet-stream"})
    r = json.loads(body)
    # the preprocessed PNG `predict` wrote, decoded by the server as pixels (28x28 passes as is)
    st2, _, body2 = s.request("POST", "/api/predict",
                              open(os.path.join(TMP, "canvas.png.png"), "rb").read(),
                              {"Content-Type": "image/png"})
    r2 = json.loads(body2)
    check("an image gets the same label, confidence and input as `mnist predict`",
          st == 200 and st2 == 200 and r["label"] == cli["label"]
          and abs(r["confidence"] - cli["confidence"]) < 1e-5 and r2["input"] == r["input"]
          and r["unsure"] == cli["unsure"] and r["digits"] == cli["digits"] == 1
          and 0 <= r["typicality"] <= 1 and abs(r["typicality"] - cli["typicality"]) < 1e-5,
          (cli, body[:120]))
    # a letter drawn with a pen (build/tools/render_glyphs): the same verdict and typicality
    glyphs = os.path.join(TMP, "glyphs")
    os.makedirs(glyphs, exist_ok=True)
    subprocess.run([os.path.join(os.path.dirname(MNIST), "tools", "render_glyphs"), glyphs, "1"],
                   check=True)
    path = os.path.join(glyphs, "letter-M-000.pgm")
    cli = json.loads(subprocess.run([MNIST, "predict", "--model", MODEL_A, "--json", path],
                                    capture_output=True, text=True).stdout)
    st, _, body = s.request("POST", "/api/predict", open(path, "rb").read(),
                            {"Content-Type": "image/x-portable-graymap"})
    r = json.loads(body) if st == 200 else {}
    check("a letter M: the same typicality, verdict and reason as `mnist predict`",
          st == 200 and abs(r.get("typicality", -1) - cli["typicality"]) < 1e-5
          and r.get("unsure") == cli["unsure"] and r.get("reason") == cli.get("reason"),
          (cli, body[:160]))
    # two digits side by side on one canvas: "unsure", as `mnist predict` says it
    a, b = digits[0], digits[1]
    pair = [v for y in range(28)  # 84x28: margin, a, gap, b, margin
            for v in [0] * 8 + a[y * 28:(y + 1) * 28] + [0] * 12 + b[y * 28:(y + 1) * 28] + [0] * 8]
    big = [pair[(y // 6) * 84 + x // 6] for y in range(28 * 6) for x in range(84 * 6)]
    path = os.path.join(TMP, "two.png")
    with open(path, "wb") as f:
        f.write(png_gray(big, 84 * 6, 28 * 6))
    out = subprocess.run([MNIST, "predict", "--model", MODEL_A, "--json", path],
                         capture_output=True, text=True)
    cli = json.loads(out.stdout)
    st, _, body = s.request("POST", "/api/predict", open(path, "rb").read(),
                            {"Content-Type": "image/png"})
    r = json.loads(body) if st == 200 else {}
    check("two digits in one picture: 200, unsure, \"more than one digit found\", digits 2, "
          "as `mnist predict` says",
          st == 200 and r.get("unsure") is True and "more than one digit" in r.get("reason", "")
          and r.get("digits") == 2 and cli["unsure"] and cli["digits"] == 2, (cli, body[:160]))


def test_errors(s, digits):
    def post(body, ctype):
        return s.request("POST", "/api/predict", body, {"Content-Type": ctype})

    cases = [
        ("malformed JSON", post(b'{"pixels": [1, 2,', "application/json"), 400, "malformed JSON"),
        ("783 pixels", post(json.dumps({"pixels": digits[0][:783]}), "application/json"), 400,
         "783 values"),
        ("a pixel of 256", post(json.dumps({"pixels": [256] + digits[0][1:]}), "application/json"),
         400, "[0]"),
        ("a pixel of 1.5", post(json.dumps({"pixels": digits[0][:5] + [1.5] + digits[0][6:]}),
                                "application/json"), 400, "[5]"),
        ("no pixels key", post(b'{"pix": []}', "application/json"), 400, "pixels"),
        ("duplicate key", post(b'{"pixels": [], "pixels": []}', "application/json"), 400,
         "duplicate"),
        ("an undecodable image", post(b"\x89PNG\r\n\x1a\nnot really", "image/png"), 400, "image"),
        ("an empty body", post(b"", "image/png"), 400, "empty"),
        ("no digit (a blank canvas)", post(png_gray([0] * 280 * 280, 280, 280), "image/png"), 400,
         "no digit"),
        ("text/plain", post(b"hello", "text/plain"), 415, "text/plain"),
        ("form data", post(b"a=b", "application/x-www-form-urlencoded"), 415, "Content-Type"),
        ("GET /api/predict", s.request("GET", "/api/predict"), 405, "POST"),
        ("POST /", s.request("POST", "/", b"x", {"Content-Type": "text/plain"}), 405, "GET"),
        ("DELETE /api/model", s.request("DELETE", "/api/model"), 405, "GET"),
        ("GET /nope", s.request("GET", "/nope"), 404, "/nope"),
        ("GET /../etc/passwd", s.request("GET", "/../etc/passwd"), 404, "no such path"),
    ]
    for what, (st, h, body), want, word in cases:
        err = error_of(body)
        check(f"{what}: {want} with a JSON error naming the problem",
              st == want and err is not None and word.lower() in err.lower()
              and h.get("Content-Type") == "application/json", (st, body[:160]))
        if want == 405:
            check(f"{what}: Allow header", "Allow" in h, h)
    big_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n"
    check("headers over the limit: 431", status_of(s.raw(big_header)) == 431)
    over = b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n" \
           b"Content-Length: 1048577\r\n\r\n"
    out = s.raw(over)
    check("Content-Length over the default 1 MB: 413 at once, before any body",
          status_of(out) == 413 and b"1048577" in out, out[:200])


def body_at_limit(digits):
    """--max-body exactly: accepted; one byte more: 413, by Content-Length and chunked."""
    doc = json.dumps({"pixels": digits[0]}).encode()
    limit = len(doc) + 100
    s = Server("--max-body", str(limit))
    exact = doc[:-1] + b" " * (limit - len(doc)) + b"}"
    st, _, _ = s.request("POST", "/api/predict", exact, {"Content-Type": "application/json"})
    check(f"a body of exactly --max-body ({limit} bytes): 200", st == 200 and len(exact) == limit, st)
    st, _, body = s.request("POST", "/api/predict", exact + b" ", {"Content-Type": "application/json"})
    check("one byte over --max-body: 413", st == 413 and "limit" in (error_of(body) or ""), st)

    def chunked(data):
        return b"".join(b"%x\r\n" % len(data[i:i + 500]) + data[i:i + 500] + b"\r\n"
                        for i in range(0, len(data), 500)) + b"0\r\n\r\n"
    head = b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" \
           b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    check("chunked, exactly --max-body: 200", status_of(s.raw(head + chunked(exact))) == 200)
    check("chunked, one byte over: 413", status_of(s.raw(head + chunked(exact + b" "))) == 413)
    rc, err = s.stop()
    check("stopped cleanly", rc == 0, err)


def concurrent_vs_serial(s, digits):
    serial = [s.predict_json(d)[2] for d in digits]
    pngs = [canvas_png(d) for d in digits[:16]]
    serial_png = [s.request("POST", "/api/predict", p, {"Content-Type": "image/png"})[2]
                  for p in pngs]
    got, errors = {}, []

    def client(k):
        try:
            c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)  # kept alive
            for i in range(k % 4, len(digits), 4):
                c.request("POST", "/api/predict", json.dumps({"pixels": digits[i]}),
                          {"Content-Type": "application/json"})
                got[(k, "json", i)] = c.getresponse().read()
            for i in range(k % 8, len(pngs), 8):
                c.request("POST", "/api/predict", pngs[i], {"Content-Type": "image/png"})
                got[(k, "png", i)] = c.getresponse().read()
            c.close()
        except Exception as e:  # noqa: BLE001 - any failure is a test failure
            errors.append(repr(e))
    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    differ = [key for key, body in got.items()
              if body != (serial if key[1] == "json" else serial_png)[key[2]]]
    check(f"16 concurrent clients ({len(got)} requests, kept-alive connections) get the serial "
          "answers byte for byte", not errors and not differ and len(got) > 200,
          (errors[:2], differ[:4]))


def ensemble(digits):
    a, b = Server(models=(MODEL_A,)), Server(models=(MODEL_B,))
    ab = Server(models=(MODEL_A, MODEL_B))
    worst = worst_typ = 0.0
    for d in digits[:20]:
        ra, rb, rab = (json.loads(x.predict_json(d)[2]) for x in (a, b, ab))
        pa, pb, pab = ra["probs"], rb["probs"], rab["probs"]
        worst = max(worst, max(abs((u + v) / 2 - w) for u, v, w in zip(pa, pb, pab)))
        worst_typ = max(worst_typ, abs((ra["typicality"] + rb["typicality"]) / 2 - rab["typicality"]))
    m = json.loads(ab.request("GET", "/api/model")[2])
    check(f"two --model flags: probabilities are the members' mean (worst difference {worst:.1e})",
          worst < 2e-6 and len(m["models"]) == 2 and "+" in m["fingerprint"], worst)
    check(f"two --model flags: typicality is the members' mean (worst difference {worst_typ:.1e})",
          worst_typ < 2e-6, worst_typ)
    for x in (a, b, ab):
        x.stop()


def slow_clients(digits):
    """One worker; slow clients must not hold it, and are cut off after --timeout."""
    s = Server("--workers", "1", "--timeout", "2")
    slow = socket.create_connection(("127.0.0.1", s.port))
    slow.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
    dribble = socket.create_connection(("127.0.0.1", s.port))
    dribble.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 5000\r\n\r\n{")
    t0 = time.monotonic()
    st, _, _ = s.predict_json(digits[0])
    took = time.monotonic() - t0
    check(f"a client stalled in its headers and one in its body do not hold the only worker "
          f"({took * 1000:.0f} ms)", st == 200 and took < 1.0, (st, took))
    # the dribbling client sends a byte every 0.5 s: never idle for 2 s, cut off anyway
    closed_at = None
    for _ in range(20):
        try:
            time.sleep(0.5)
            dribble.sendall(b" ")
        except OSError:
            closed_at = time.monotonic() - t0
            break
    slow.settimeout(5)
    try:
        slow_closed = slow.recv(100) == b""
    except (socket.timeout, ConnectionResetError):
        slow_closed = False
    check("a client idle in its headers is closed after --timeout", slow_closed)
    check(f"a client dribbling its body is cut off after --timeout in all "
          f"({closed_at if closed_at is None else round(closed_at, 1)} s)",
          closed_at is not None and closed_at < 6, closed_at)
    rc, err = s.stop()
    check("stopped cleanly", rc == 0, err)


def saturation(digits):
    """--max-pending 1: while one prediction's body is still arriving, another gets 503."""
    s = Server("--workers", "1", "--max-pending", "1", "--max-connections", "3")
    first = socket.create_connection(("127.0.0.1", s.port))
    doc = json.dumps({"pixels": digits[0]}).encode()
    first.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(doc) + doc[:10])
    time.sleep(0.3)
    st, h, body = s.predict_json(digits[0])
    check("a prediction past --max-pending: 503 with Retry-After",
          st == 503 and h.get("Retry-After") == "1" and "busy" in (error_of(body) or ""), (st, body))
    first.sendall(doc[10:])
    first.settimeout(5)
    reply = first.recv(65536)
    check("the pending one is then answered", status_of(reply) == 200, reply[:80])
    first.close()
    check("and after it, predictions succeed again", s.predict_json(digits[0])[0] == 200)
    # --max-connections 3: a fourth connection is closed without an answer
    held = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(3)]
    time.sleep(0.3)
    out = s.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", wait=2)
    check("a connection past --max-connections is closed at once", out == b"", out[:80])
    for c in held:
        c.close()
    time.sleep(0.3)
    check("and once they close, new connections are served", s.request("GET", "/healthz")[0] == 200)
    rc, err = s.stop()
    check("stopped cleanly", rc == 0, err)


def shutdown(digits):
    for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")):
        s = Server()
        idle = socket.create_connection(("127.0.0.1", s.port))  # an open keep-alive connection
        s.predict_json(digits[0])
        t0 = time.monotonic()
        rc, err = s.stop(sig)
        took = time.monotonic() - t0
        check(f"{name}: exit 0 within 2 s with a connection open ({took:.2f} s), one line said",
              rc == 0 and took < 2 and err.strip() == f"mnist: serve: {name}, stopped", (rc, err))
        idle.close()
        try:
            socket.create_connection(("127.0.0.1", s.port), timeout=1).close()
            refused = False
        except OSError:
            refused = True
        check(f"{name}: the port is closed afterwards", refused)


def shutdown_under_load(digits):
    """SIGTERM while 16 clients keep predicting: queued work is finished, exit 0, quickly."""
    s = Server("--workers", "2")
    stop = threading.Event()
    answered = [0] * 16

    def client(k):
        body = canvas_png(digits[k]) if k % 2 else json.dumps({"pixels": digits[k]})
        ctype = "image/png" if k % 2 else "application/json"
        while not stop.is_set():
            try:
                c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
                while not stop.is_set():
                    c.request("POST", "/api/predict", body, {"Content-Type": ctype})
                    if c.getresponse().read() and not stop.is_set():
                        answered[k] += 1
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)
    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    t0 = time.monotonic()
    rc, err = s.stop()
    took = time.monotonic() - t0
    stop.set()
    for t in threads:
        t.join()
    check(f"SIGTERM under load ({sum(answered)} answers in 1.5 s from 16 clients): exit 0 "
          f"within 3 s ({took:.2f} s)", rc == 0 and took < 3 and sum(answered) > 50
          and err.strip() == "mnist: serve: SIGTERM, stopped", (rc, err, sum(answered)))


def bad_flags():
    fifo = os.path.join(TMP, "fifo.model")
    os.mkfifo(fifo)
    bad_model = os.path.join(TMP, "bad.model")
    with open(bad_model, "wb") as f:
        f.write(b"CNNMODEL" + b"\0" * 20)
    cases = [
        ([], 2, "--model"),
        (["--model", MODEL_A, "--port", "70000"], 2, "--port"),
        (["--model", MODEL_A, "--workers", "0"], 2, "--workers"),
        (["--model", MODEL_A, "--max-body", "-5"], 2, "--max-body"),
        (["--model", MODEL_A, "--timeout", "abc"], 2, "--timeout"),
        (["--model", MODEL_A, "--bogus"], 2, "--bogus"),
        (["--model", MODEL_A, "extra"], 2, "extra"),
        (["--model", os.path.join(TMP, "missing.model")], 1, "missing.model"),
        (["--model", bad_model], 1, "bad.model"),
        (["--model", "/dev/null"], 1, "/dev/null"),
        (["--model", fifo], 1, "fifo.model"),
        (["--model", MODEL_A, "--host", "no.such.host.invalid"], 2, "no.such.host.invalid"),
        (["--model", MODEL_A, "--host", "192.0.2.1"], 1, "192.0.2.1"),
    ]
    for args, want, word in cases:
        p = subprocess.run([MNIST, "serve"] + args, capture_output=True, text=True, timeout=20)
        first = p.stderr.strip().splitlines()[0] if p.stderr.strip() else ""
        shown = " ".join("MODEL" if a == MODEL_A else a for a in args) or "(no flags)"
        check(f"serve {shown}: exit {want}, one line naming {word}",
              p.returncode == want and word in first and first.startswith("mnist: "),
              (p.returncode, p.stderr[:200]))
    # a port in use
    s = Server()
    p = subprocess.run([MNIST, "serve", "--model", MODEL_A, "--port", str(s.port)],
                       capture_output=True, text=True, timeout=20)
    check("a port already in use: exit 1, says so", p.returncode == 1 and "in use" in p.stderr,
          p.stderr)
    s.stop()


def main():
    digits, labels = mnist_test_digits(64)
    s = Server()
    test_endpoints(s, digits, labels)
    same_as_predict_cli(s, digits, labels)
    test_errors(s, digits)
    concurrent_vs_serial(s, digits)
    st, _, body = s.request("GET", "/metrics")
    text = body.decode()
    check("metrics count the errors by code",
          all(f'code="{c}"}} 0' not in text for c in (400, 404, 405, 413, 415)), text[:600])
    rc, err = s.stop()
    check("stopped cleanly", rc == 0, err)
    body_at_limit(digits)
    ensemble(digits)
    slow_clients(digits)
    saturation(digits)
    shutdown(digits)
    shutdown_under_load(digits)
    bad_flags()
    print(f"serve: {PASS} passed, {FAIL} failed")
    sys.exit(1 if FAIL else 0)


if __name__ == "__main__":
    main()
