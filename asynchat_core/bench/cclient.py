"""The built-in load client in C, for servers faster than a Python client.

The Python client (``client.py``) spends about a microsecond of its own CPU
per pipelined record, as much as the fastest servers measured here spend per
record: on a two-core machine it, not the server, then sets the rate (issue
19's length-prefixed records).  This is the same client in C: the same
protocol (each connection sends a block of ``depth`` requests, counts reply
bytes until the whole block is answered, sends it again; nothing parsed), the
same warm-up window and the same result dict.  It is compiled with the
system's C compiler on first use, into a temporary directory (``CC``, default
``cc``); without a compiler the Python client is used and the report says so.

The source is kept here as a string so that sdists and wheels, which carry no
``.c`` files, still carry it.
"""
import atexit
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from typing import Any, Dict, Optional, Tuple

# Arguments: PORT CONNS DURATION WARMUP REPLY_SIZE DEPTH; stdin: one request.
# Output: one JSON object (run_client's keys).  Exit 1 with a message on
# stderr on any failure (a refused connect, a connection the server closed),
# 2 on bad arguments.
SOURCE = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 10000
#define MAX_BLOCK (64 * 1024 * 1024)

struct conn {
    int fd;
    size_t sent;        /* bytes of the block sent */
    long long owed;     /* reply bytes still owed for the blocks sent */
    int out_armed;      /* EPOLLOUT in the interest set */
};

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(1);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
         + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static long arg(const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) {
        fprintf(stderr, "loadgen: bad argument %s\n", s);
        exit(2);
    }
    return v;
}

static void arm(int ep, struct conn *c, unsigned idx, int out) {
    if (c->out_armed == out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.u32 = idx};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl");
    c->out_armed = out;
}

/* send what is left of the block; arm EPOLLOUT only when the socket is full */
static void push(int ep, struct conn *c, unsigned idx, const char *block, size_t len) {
    while (c->sent < len) {
        ssize_t n = send(c->fd, block + c->sent, len - c->sent, MSG_NOSIGNAL);
        if (n > 0) {
            c->sent += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            arm(ep, c, idx, 1);
            return;
        } else {
            die("send");
        }
    }
    arm(ep, c, idx, 0);
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: loadgen PORT CONNS DURATION WARMUP REPLY_SIZE DEPTH < request\n");
        return 2;
    }
    int port = (int)arg(argv[1], 1, 65535);
    int nconns = (int)arg(argv[2], 1, MAX_CONNS);
    double duration = strtod(argv[3], NULL), warmup = strtod(argv[4], NULL);
    long reply_size = arg(argv[5], 1, MAX_BLOCK);
    long depth = arg(argv[6], 1, 100000);
    if (!(duration > 0 && duration <= 3600 && warmup >= 0 && warmup <= 60)) {
        fprintf(stderr, "loadgen: bad duration or warm-up\n");
        return 2;
    }

    /* the request, from stdin, repeated depth times */
    char *req = malloc(MAX_BLOCK);
    if (!req)
        die("malloc");
    size_t reqlen = 0;
    for (;;) {
        ssize_t n = read(0, req + reqlen, MAX_BLOCK - reqlen);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("read stdin");
        }
        reqlen += (size_t)n;
        if (reqlen == MAX_BLOCK) {
            fprintf(stderr, "loadgen: request too large\n");
            return 2;
        }
    }
    if (reqlen == 0 || (size_t)depth > MAX_BLOCK / reqlen) {
        fprintf(stderr, "loadgen: empty request, or block too large\n");
        return 2;
    }
    size_t blocklen = reqlen * (size_t)depth;
    char *block = malloc(blocklen);
    if (!block)
        die("malloc");
    for (long i = 0; i < depth; i++)
        memcpy(block + (size_t)i * reqlen, req, reqlen);
    free(req);
    long long block_reply = (long long)reply_size * depth;

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    if (!conns)
        die("calloc");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < nconns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            die("socket");
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
            die("connect");
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
            die("fcntl");
        conns[i].fd = fd;
        conns[i].owed = block_reply;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            die("epoll_ctl");
    }

    static char buf[1 << 18];
    struct epoll_event evs[256];
    long long received = 0, mark = -1;
    double cpu0 = cpu_s(), start = now_s();
    double window_start = start + warmup, deadline = window_start + duration, now = start;
    for (int i = 0; i < nconns; i++)
        push(ep, &conns[i], (unsigned)i, block, blocklen);
    while (now < deadline) {
        int n = epoll_wait(ep, evs, 256, 500);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int k = 0; k < n; k++) {
            unsigned idx = evs[k].data.u32;
            struct conn *c = &conns[idx];
            if (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t got = recv(c->fd, buf, sizeof buf, 0);
                if (got == 0) {
                    errno = 0;
                    die("the server closed a connection");
                }
                if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                    die("recv");
                if (got > 0) {
                    received += got;
                    c->owed -= got;
                    if (c->owed <= 0 && c->sent == blocklen) {
                        /* the whole block answered: send it again */
                        c->sent = 0;
                        c->owed += block_reply;
                        push(ep, c, idx, block, blocklen);
                    }
                }
            }
            if ((evs[k].events & EPOLLOUT) && c->sent < blocklen)
                push(ep, c, idx, block, blocklen);
        }
        now = now_s();
        if (mark < 0 && now >= window_start)
            mark = received;
    }
    double cpu1 = cpu_s();
    for (int i = 0; i < nconns; i++)
        close(conns[i].fd);
    long long window = received - (mark < 0 ? 0 : mark);
    double elapsed = now - (mark < 0 ? start : window_start);
    printf("{\"requests\": %lld, \"rate\": %.3f, \"elapsed\": %.6f, \"client_cpu\": %.6f, "
           "\"reply_size\": %ld}\n",
           received / reply_size, (double)(window / reply_size) / elapsed, now - start,
           (cpu1 - cpu0) / (now - start), reply_size);
    return 0;
}
"""

_built: Dict[str, Tuple[Optional[str], str]] = {}


def build() -> Tuple[Optional[str], str]:
    """Compile the client once per process: ``(path, "")``, or ``(None, why)``."""
    cc = os.environ.get("CC", "cc")
    key = hashlib.sha256((cc + SOURCE).encode()).hexdigest()[:16]
    if key not in _built:
        _built[key] = _compile(cc, key)
    return _built[key]


def _compile(cc: str, key: str) -> Tuple[Optional[str], str]:
    if shutil.which(cc) is None:
        return None, "no C compiler (%s)" % cc
    folder = tempfile.mkdtemp(prefix="asynchat_core-loadgen-")
    atexit.register(shutil.rmtree, folder, True)
    src = os.path.join(folder, "loadgen.c")
    exe = os.path.join(folder, "loadgen-" + key)
    with open(src, "w") as fh:
        fh.write(SOURCE)
    out = subprocess.run([cc, "-O2", "-Wall", "-Werror", "-o", exe, src],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        return None, "%s failed: %s" % (cc, (out.stderr or out.stdout).strip()[-300:])
    return exe, ""


def run_client(exe: str, port: int, conns: int, duration: float, request: bytes,
               reply_size: int, depth: int, warmup: float = 0.2) -> Dict[str, Any]:
    """Run the compiled client; return the Python client's result dict."""
    cmd = [exe, str(port), str(conns), repr(float(duration)), repr(float(warmup)),
           str(reply_size), str(depth)]
    out = subprocess.run(cmd, input=request, capture_output=True, timeout=60 + 4 * duration)
    if out.returncode != 0:
        raise RuntimeError("load client failed: %s"
                           % (out.stderr or out.stdout).decode(errors="replace").strip()[-300:])
    result: Dict[str, Any] = json.loads(out.stdout)
    return result
