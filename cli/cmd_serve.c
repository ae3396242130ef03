/*
 * cmd_serve.c - `mnist serve`: the draw-a-digit page and a JSON API over HTTP, on libmicrohttpd.
 *
 * Threads. libmicrohttpd's thread pool has --workers threads, each polling its share of the
 * connections. A worker classifies on its own thread with its own context (made the first time
 * it predicts, batches of 1, one thread), and every worker reads the same immutable models. So
 * 64 connections never start 64 teams on two cores: the work waits in the workers' queues.
 *
 * Limits, each a flag, so that a crowd or an attacker meets a clear answer instead of a hang:
 *   --max-connections  open connections; past it new ones are closed at once by the library
 *   --max-pending      prediction requests received and not yet answered; past it 503
 *   --timeout          a connection idle this long is closed, and a body that takes longer in
 *                      all is cut off (a slow-loris client holds a slot, never a thread)
 *   --max-body         413 past it: at once when Content-Length says so, else when the
 *                      bytes received pass it
 *   headers            HEADER_MEMORY bytes per connection for the request line and headers
 *                      (libmicrohttpd's memory pool); past it the library answers 431
 *
 * Routes: GET / (web/index.html), GET /healthz, GET /metrics, GET /api/model, POST /api/predict.
 * Errors are JSON {"error": "..."}. The request's parsing and the replies' bodies are in
 * serve_api.c; the counters in serve_metrics.c.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "cli.h"
#include "serve.h"

#define HEADER_MEMORY (32u << 10)

static void usage(FILE *f) {
    fputs("usage: mnist serve --model FILE [--model FILE...] [OPTIONS]\n"
          "Serves a page to draw digits on and a JSON API (POST /api/predict, GET /api/model,\n"
          "GET /healthz, GET /metrics). Several --model flags serve an ensemble (probabilities\n"
          "averaged). Stops cleanly on SIGINT or SIGTERM.\n"
          "  --model FILE            a trained model (required; up to 16)\n"
          "  --host ADDR             address to listen on (default 127.0.0.1; 0.0.0.0 or :: for all)\n"
          "  --port N                TCP port, 0 for any free one (default 8080)\n"
          "  --workers N             request workers, each with its own context (default: cores)\n"
          "  --max-connections N     open connections at once (default 256)\n"
          "  --max-pending N         predictions received and not answered; more get 503\n"
          "                          (default 128)\n"
          "  --timeout SECONDS       idle connections are closed, slow bodies cut (default 10)\n"
          "  --max-body BYTES        largest request body; more gets 413 (default 1048576)\n",
          f);
}

struct serve_cfg {
    const char *model_paths[SERVE_MAX_MODELS];
    int n_models;
    const char *host;
    int port, workers, max_connections, max_pending, timeout;
    int max_body;
};

/* A worker's contexts, one per model, made on the worker's first prediction. */
struct worker {
    struct worker *next;
    struct cnn_ctx *ctx[SERVE_MAX_MODELS];
};

struct server {
    struct serve_cfg cfg;
    struct serve_models models;
    atomic_long in_flight;      /* prediction requests received and not yet answered */
    pthread_mutex_t lock;       /* guards workers */
    struct worker *workers;     /* every worker's contexts, freed at exit */
};

static _Thread_local struct worker *this_worker;

enum body_kind { BODY_JSON = 1, BODY_IMAGE };

/* One request, from its headers to its completion. */
struct request {
    double t0;
    int status;       /* of the reply queued; 0 until then */
    int predict;      /* POST /api/predict */
    int counted;      /* counted in in_flight */
    int kind;         /* enum body_kind */
    int too_big;      /* the body passed --max-body; the rest is dropped */
    char *body;
    size_t len, cap;
};

/* ---- replies -------------------------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, struct request *r, int status,
                             const char *type, void *body, size_t len, enum MHD_ResponseMemoryMode mode,
                             const char *header, const char *value) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, mode);
    if (!resp) {
        if (mode == MHD_RESPMEM_MUST_FREE) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (header) MHD_add_response_header(resp, header, value);
    const enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    if (rc == MHD_YES) r->status = status;
    return rc;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, struct request *r, int status,
                                  char *json, size_t len) {
    if (!json) return MHD_NO; /* out of memory: drop the connection */
    return reply(c, r, status, "application/json", json, len, MHD_RESPMEM_MUST_FREE, NULL, NULL);
}

/* {"error": ...} with a status, and one extra header (Allow, Retry-After) or none. */
static enum MHD_Result reply_error(struct MHD_Connection *c, struct request *r, int status,
                                   const char *header, const char *value, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static enum MHD_Result reply_error(struct MHD_Connection *c, struct request *r, int status,
                                   const char *header, const char *value, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t len = 0;
    char *json = serve_error_json(msg, &len);
    if (!json) return MHD_NO;
    return reply(c, r, status, "application/json", json, len, MHD_RESPMEM_MUST_FREE, header,
                 value);
}

static enum MHD_Result reply_page(struct MHD_Connection *c, struct request *r) {
    /* The page's script and style are inline; it talks to this server only. */
    return reply(c, r, 200, "text/html; charset=utf-8", (void *)serve_page_html,
                 serve_page_html_len, MHD_RESPMEM_PERSISTENT, "Content-Security-Policy",
                 "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                 "img-src data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                 "frame-ancestors 'none'");
}

/* ---- prediction ----------------------------------------------------------------------------- */

static struct worker *worker_get(struct server *s) {
    if (this_worker) return this_worker;
    struct worker *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    for (int i = 0; i < s->models.n; i++) {
        if (cnn_ctx_new(s->models.m[i], 1, 1, &w->ctx[i]) != CNN_OK) {
            for (int j = 0; j < i; j++) cnn_ctx_free(w->ctx[j]);
            free(w);
            return NULL;
        }
    }
    pthread_mutex_lock(&s->lock);
    w->next = s->workers;
    s->workers = w;
    pthread_mutex_unlock(&s->lock);
    return this_worker = w;
}

/* The 28x28 input of a request: the JSON pixels as they are, or an image prepared like MNIST.
 * Returns 0, or the status of the error reply already queued (-1: none could be queued). */
static int request_pixels(struct MHD_Connection *c, struct request *r, uint8_t px[SERVE_PIXELS]) {
    if (r->kind == BODY_JSON) {
        char err[256];
        if (serve_parse_pixels(r->body ? r->body : "", r->len, px, err, sizeof err) == 0) return 0;
        return reply_error(c, r, 400, NULL, NULL, "%s", err) == MHD_YES ? 400 : -1;
    }
    struct cnn_image img;
    int rc = cnn_image_decode(r->body, r->len, "image", &img);
    if (rc == CNN_OK) {
        rc = cnn_image_to_mnist(&img, px);
        cnn_image_free(&img);
        if (rc == CNN_ERR_NODIGIT)
            return reply_error(c, r, 400, NULL, NULL, "image: no digit found") == MHD_YES ? 400
                                                                                          : -1;
    }
    if (rc == CNN_OK) return 0;
    const int status = rc == CNN_ERR_NOMEM ? 500 : 400;
    return reply_error(c, r, status, NULL, NULL, "%s", cnn_errmsg()) == MHD_YES ? status : -1;
}

static enum MHD_Result predict(struct server *s, struct MHD_Connection *c, struct request *r) {
    if (r->too_big)
        return reply_error(c, r, 413, NULL, NULL, "request body over the limit of %d bytes",
                           s->cfg.max_body);
    uint8_t px[SERVE_PIXELS];
    const int bad = request_pixels(c, r, px);
    if (bad) return bad > 0 ? MHD_YES : MHD_NO;
    struct worker *w = worker_get(s);
    if (!w) return reply_error(c, r, 500, NULL, NULL, "cannot make a context: %s", cnn_errmsg());
    const int k = s->models.n_classes;
    float sum[10] = {0}, probs[10];
    for (int i = 0; i < s->models.n; i++) {
        if (cnn_predict_u8(s->models.m[i], w->ctx[i], px, 1, probs) != CNN_OK)
            return reply_error(c, r, 500, NULL, NULL, "%s", cnn_errmsg());
        for (int j = 0; j < k; j++) sum[j] += probs[j];
    }
    for (int j = 0; j < k; j++) sum[j] /= (float)s->models.n;
    serve_metrics_predicted();
    size_t len = 0;
    char *json = serve_predict_json(&s->models, sum, px, &len);
    return reply_json(c, r, 200, json, len);
}

/* ---- routing -------------------------------------------------------------------------------- */

/* The media type of Content-Type (before any ';'), compared without case. */
static int media_type_is(const char *ct, const char *type) {
    const size_t n = strlen(type);
    if (strncasecmp(ct, type, n) != 0) return 0;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t';
}

static int body_kind(const char *ct) {
    static const char *const images[] = {
        "image/png",         "image/jpeg",        "image/jpg",          "image/pjpeg",
        "image/gif",         "image/bmp",         "image/x-ms-bmp",     "image/x-tga",
        "image/x-targa",     "image/tga",         "image/x-portable-graymap",
        "image/x-portable-pixmap", "image/x-portable-anymap", "application/octet-stream"};
    if (!ct) return 0;
    while (*ct == ' ' || *ct == '\t') ct++;
    if (media_type_is(ct, "application/json")) return BODY_JSON;
    for (size_t i = 0; i < sizeof images / sizeof images[0]; i++)
        if (media_type_is(ct, images[i])) return BODY_IMAGE;
    return 0;
}

/* POST /api/predict, at its headers: admit it, or answer 503, 415 or 413 at once (and close the
 * connection: the body is not read). */
static enum MHD_Result predict_begin(struct server *s, struct MHD_Connection *c,
                                     struct request *r) {
    r->counted = 1;
    if (atomic_fetch_add(&s->in_flight, 1) + 1 > s->cfg.max_pending)
        return reply_error(c, r, 503, MHD_HTTP_HEADER_RETRY_AFTER, "1",
                           "server busy: %d predictions pending; try again", s->cfg.max_pending);
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    r->kind = body_kind(ct);
    if (!r->kind)
        return reply_error(c, r, 415, NULL, NULL,
                           "Content-Type %s%s%s: send application/json {\"pixels\": [784 "
                           "integers]} or an image (image/png, image/jpeg, ...)",
                           ct ? "'" : "", ct ? ct : "missing", ct ? "' is not supported" : "");
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        errno = 0;
        const unsigned long long n = strtoull(cl, &end, 10);
        if (errno == 0 && end != cl && n > (unsigned long long)s->cfg.max_body)
            return reply_error(c, r, 413, NULL, NULL,
                               "request body of %llu bytes, over the limit of %d", n,
                               s->cfg.max_body);
    }
    return MHD_YES;
}

/* Everything but a prediction, answered once the request is in (answering at the headers
 * would make libmicrohttpd close the connection instead of keeping it alive). */
static enum MHD_Result answer(struct server *s, struct MHD_Connection *c, struct request *r,
                              const char *url, const char *method) {
    if (!strcmp(url, "/api/predict"))
        return reply_error(c, r, 405, MHD_HTTP_HEADER_ALLOW, "POST", "%s /api/predict: use POST",
                           method);
    static const char *const paths[] = {"/", "/healthz", "/metrics", "/api/model"};
    int page = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(url, paths[i])) page = i;
    if (page < 0) return reply_error(c, r, 404, NULL, NULL, "no such path: %s", url);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply_error(c, r, 405, MHD_HTTP_HEADER_ALLOW, "GET, HEAD", "%s %s: use GET",
                           method, url);
    size_t len = 0;
    switch (page) {
    case 0: return reply_page(c, r);
    case 1:
        return reply(c, r, 200, "text/plain; charset=utf-8", (void *)"ok\n", 3,
                     MHD_RESPMEM_PERSISTENT, NULL, NULL);
    case 2: {
        char *text = serve_metrics_text(s->cfg.workers, atomic_load(&s->in_flight), &len);
        if (!text) return MHD_NO;
        return reply(c, r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len,
                     MHD_RESPMEM_MUST_FREE, NULL, NULL);
    }
    default:
        return reply(c, r, 200, "application/json", s->models.model_json,
                     s->models.model_json_len, MHD_RESPMEM_PERSISTENT, NULL, NULL);
    }
}

/* A chunk of a prediction's body. Past --max-body the chunk is dropped and the reply is 413;
 * past --timeout in all the connection is closed (the client is sending too slowly). */
static enum MHD_Result receive(struct server *s, struct request *r, const char *data,
                               size_t *size) {
    const size_t n = *size;
    *size = 0;
    if (cli_now() - r->t0 > s->cfg.timeout) return MHD_NO;
    if (r->too_big || r->len + n > (size_t)s->cfg.max_body) {
        r->too_big = 1;
        free(r->body);
        r->body = NULL;
        r->len = r->cap = 0;
        return MHD_YES;
    }
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n) cap *= 2;
        char *p = realloc(r->body, cap);
        if (!p) return MHD_NO;
        r->body = p;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **req_cls) {
    (void)version;
    struct server *s = cls;
    struct request *r = *req_cls;
    if (!r) {
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        r->t0 = cli_now();
        *req_cls = r;
        r->predict = !strcmp(url, "/api/predict") && !strcmp(method, "POST");
        return r->predict ? predict_begin(s, c, r) : MHD_YES;
    }
    if (r->status || (*size && !r->predict)) { /* answered already, or a body nobody reads */
        *size = 0;
        return MHD_YES;
    }
    if (*size) return receive(s, r, data, size);
    return r->predict ? predict(s, c, r) : answer(s, c, r, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode why) {
    (void)c;
    (void)why;
    struct server *s = cls;
    struct request *r = *req_cls;
    if (!r) return;
    if (r->counted) atomic_fetch_sub(&s->in_flight, 1);
    if (r->status) serve_metrics_record(r->status, cli_now() - r->t0);
    free(r->body);
    free(r);
    *req_cls = NULL;
}

/* ---- start, run, stop ----------------------------------------------------------------------- */

static int parse_args(int argc, char **argv, struct serve_cfg *cfg) {
    enum { O_HOST = 256, O_PORT, O_WORKERS, O_MAXCONN, O_PENDING, O_TIMEOUT, O_BODY };
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},         {"host", required_argument, 0, O_HOST},
        {"port", required_argument, 0, O_PORT},       {"workers", required_argument, 0, O_WORKERS},
        {"max-connections", required_argument, 0, O_MAXCONN},
        {"max-pending", required_argument, 0, O_PENDING},
        {"timeout", required_argument, 0, O_TIMEOUT}, {"max-body", required_argument, 0, O_BODY},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
    *cfg = (struct serve_cfg){.host = "127.0.0.1", .port = 8080, .workers = cnn_default_threads(),
                              .max_connections = 256, .max_pending = 128, .timeout = 10,
                              .max_body = 1 << 20};
    int ch, rc = 0;
    opterr = 0;
    optind = 1;
    while (rc == 0 && (ch = getopt_long(argc, argv, ":m:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'm':
            if (cfg->n_models == SERVE_MAX_MODELS) {
                cli_err("--model: at most %d models", SERVE_MAX_MODELS);
                return 2;
            }
            cfg->model_paths[cfg->n_models++] = optarg;
            break;
        case O_HOST: cfg->host = optarg; break;
        case O_PORT: rc = cli_int("--port", optarg, 0, 65535, &cfg->port); break;
        case O_WORKERS: rc = cli_int("--workers", optarg, 1, 256, &cfg->workers); break;
        case O_MAXCONN:
            rc = cli_int("--max-connections", optarg, 1, 65536, &cfg->max_connections);
            break;
        case O_PENDING: rc = cli_int("--max-pending", optarg, 1, 65536, &cfg->max_pending); break;
        case O_TIMEOUT: rc = cli_int("--timeout", optarg, 1, 3600, &cfg->timeout); break;
        case O_BODY: rc = cli_int("--max-body", optarg, 1, 256 << 20, &cfg->max_body); break;
        case 'h': usage(stdout); return -1;
        default: cli_bad_option(argc, argv, ch); return 2;
        }
    }
    if (rc != 0) return 2;
    if (optind < argc) {
        cli_err("serve: unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (cfg->n_models == 0) {
        cli_err("serve: --model FILE is required");
        usage(stderr);
        return 2;
    }
    return 0;
}

/* The address to listen on, from --host and --port. */
static int resolve(const struct serve_cfg *cfg, struct sockaddr_storage *addr) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof port, "%d", cfg->port);
    const int rc = getaddrinfo(cfg->host, port, &hints, &res);
    if (rc != 0) {
        cli_err("--host %s: %s", cfg->host, gai_strerror(rc));
        return -1;
    }
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static struct MHD_Daemon *start(struct server *s, const struct sockaddr_storage *addr) {
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD;
    if (addr->ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    return MHD_start_daemon(
        flags, (uint16_t)s->cfg.port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s->cfg.workers, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)s->cfg.max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)s->cfg.timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HEADER_MEMORY,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
}

/* "http://HOST:PORT/" of the running daemon (IPv6 addresses in brackets). */
static void print_url(struct MHD_Daemon *d, const struct serve_cfg *cfg) {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    const unsigned port = info ? info->port : (unsigned)cfg->port;
    const int v6 = strchr(cfg->host, ':') != NULL;
    printf("mnist: serving http://%s%s%s:%u/ (%d workers, %d model%s)\n", v6 ? "[" : "",
           cfg->host, v6 ? "]" : "", port, cfg->workers, cfg->n_models,
           cfg->n_models > 1 ? "s, averaged" : "");
    fflush(stdout);
}

static void server_free(struct server *s) {
    for (struct worker *w = s->workers, *next; w; w = next) {
        next = w->next;
        for (int i = 0; i < s->models.n; i++) cnn_ctx_free(w->ctx[i]);
        free(w);
    }
    serve_models_free(&s->models);
    pthread_mutex_destroy(&s->lock);
}

int cmd_serve(int argc, char **argv) {
    static struct server s; /* its address is the daemon's closure for its whole life */
    const int prc = parse_args(argc, argv, &s.cfg);
    if (prc) return prc < 0 ? 0 : prc;
    struct sockaddr_storage addr = {0};
    if (resolve(&s.cfg, &addr) != 0) return 2;
    char err[512];
    if (serve_models_load(&s.models, s.cfg.model_paths, s.cfg.n_models, err, sizeof err) != 0) {
        cli_err("%s", err);
        return 1;
    }
    pthread_mutex_init(&s.lock, NULL);
    /* The daemon's threads inherit this mask, so SIGINT and SIGTERM reach sigwait below. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct MHD_Daemon *d = start(&s, &addr);
    if (!d) {
        cli_err("serve: cannot listen on %s port %d: %s", s.cfg.host, s.cfg.port,
                errno ? strerror(errno) : "libmicrohttpd refused to start");
        server_free(&s);
        return 1;
    }
    print_url(d, &s.cfg);
    int sig = 0;
    sigwait(&stop, &sig);
    MHD_stop_daemon(d); /* closes the listening socket and every connection, joins the workers */
    fprintf(stderr, "mnist: serve: %s, stopped\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    server_free(&s);
    return 0;
}
