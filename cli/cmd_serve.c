/*
 * cmd_serve.c - `mnist serve`: the draw-a-digit page and a JSON API over HTTP, on libmicrohttpd.
 *
 * Threads. One libmicrohttpd thread reads and writes every connection; --workers threads
 * classify. When a prediction's body is in, its connection is suspended and the request joins
 * one queue; a free worker takes it, decodes, prepares and classifies it on its own context
 * (batches of 1, one thread; every worker reads the same immutable models), writes the reply
 * and resumes the connection, and the library thread sends it. So 64 connections never start
 * 64 teams on two cores, and no worker idles while another has a backlog: libmicrohttpd's own
 * thread pool gives each thread the connections it happened to accept, and under 16
 * connections one of two threads was measured holding all of them (half the throughput).
 *
 * Limits, each a flag, so that a crowd or an attacker meets a clear answer instead of a hang:
 *   --max-connections  open connections; past it new ones are closed at once by the library
 *   --max-pending      prediction requests received and not yet answered (receiving, queued
 *                      or being classified); past it 503
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
#include <unistd.h>

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
          "  --host ADDR             address to listen on (default 127.0.0.1; 0.0.0.0 or ::\n"
          "                          for every address)\n"
          "  --port N                TCP port, 0 for any free one (default 8080)\n"
          "  --workers N             threads that classify, each with its own context\n"
          "                          (default: cores)\n"
          "  --max-connections N     open connections at once (default 256)\n"
          "  --max-pending N         predictions received and not answered; more get 503\n"
          "                          (default 128)\n"
          "  --timeout SECONDS       idle connections are closed, slow bodies cut (default 10)\n"
          "  --max-body BYTES        largest request body; more gets 413 (default 1048576)\n"
          "  --min-confidence P      below this probability a reply says \"unsure\" (0..1,\n"
          "                          default 0.35); so does a picture of several digits\n"
          "  --min-typicality T      ... and below this typicality, where the model has one\n"
          "                          (0..1, default 0.002; see `mnist predict --help`)\n",
          f);
}

struct serve_cfg {
    const char *model_paths[SERVE_MAX_MODELS];
    int n_models;
    const char *host;
    int port, workers, max_connections, max_pending, timeout;
    int max_body;
    float min_confidence, min_typicality;
};

struct server;

/* A classifying thread and its contexts, one per model. */
struct worker {
    struct server *s;
    pthread_t thread;
    struct cnn_ctx *ctx[SERVE_MAX_MODELS];
};

enum body_kind { BODY_JSON = 1, BODY_IMAGE };
enum job_state { RECEIVING, QUEUED, ANSWERED };

/* One request, from its headers to its completion. */
struct request {
    struct MHD_Connection *conn;
    struct request *next;    /* in the queue */
    double t0;
    int status;              /* of the reply queued; 0 until then */
    int predict;             /* POST /api/predict */
    int counted;             /* counted in in_flight */
    int kind;                /* enum body_kind */
    int too_big;             /* the body passed --max-body; the rest is dropped */
    atomic_int state;        /* enum job_state: the worker's ANSWERED publishes the reply */
    char *body;
    size_t len, cap;
    int out_status;          /* the reply being built: status and JSON body (NULL: no memory) */
    char *out_body;
    size_t out_len;
};

struct server {
    struct serve_cfg cfg;
    struct serve_models models;
    atomic_long in_flight;      /* prediction requests received and not yet answered */
    struct worker *workers;     /* cfg.workers of them */
    int n_started;              /* threads started */
    pthread_mutex_t lock;       /* guards the queue and stopping */
    pthread_cond_t ready;       /* a job was queued, or stopping */
    struct request *head, *tail;
    int stopping;
};

/* ---- replies -------------------------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, struct request *r, int status,
                             const char *type, void *body, size_t len,
                             enum MHD_ResponseMemoryMode mode, const char *header,
                             const char *value) {
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

/* The error reply {"error": msg} into r's reply being built. */
static void set_error_v(struct request *r, int status, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    free(r->out_body);
    r->out_status = status;
    r->out_body = serve_error_json(msg, &r->out_len);
}

static void set_error(struct request *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_error(struct request *r, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_error_v(r, status, fmt, ap);
    va_end(ap);
}

/* Queue r's reply being built, with one extra header (Allow, Retry-After) or none. */
static enum MHD_Result send_built(struct MHD_Connection *c, struct request *r, const char *header,
                                  const char *value) {
    char *body = r->out_body;
    r->out_body = NULL;
    if (!body) return MHD_NO; /* out of memory: drop the connection */
    return reply(c, r, r->out_status, "application/json", body, r->out_len,
                 MHD_RESPMEM_MUST_FREE, header, value);
}

static enum MHD_Result reply_error(struct MHD_Connection *c, struct request *r, int status,
                                   const char *header, const char *value, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static enum MHD_Result reply_error(struct MHD_Connection *c, struct request *r, int status,
                                   const char *header, const char *value, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_error_v(r, status, fmt, ap);
    va_end(ap);
    return send_built(c, r, header, value);
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

/* The 28x28 input of a request: the JSON pixels as they are, or an image prepared like MNIST
 * (*objects: the digits found in it; 1 for JSON pixels). Returns 0, or -1 with the error reply
 * set. */
static int request_pixels(struct request *r, uint8_t px[SERVE_PIXELS], int *objects) {
    *objects = 1;
    if (r->kind == BODY_JSON) {
        char err[256];
        if (serve_parse_pixels(r->body ? r->body : "", r->len, px, err, sizeof err) == 0) return 0;
        set_error(r, 400, "%s", err);
        return -1;
    }
    struct cnn_image img;
    int rc = cnn_image_decode(r->body, r->len, "image", &img);
    if (rc == CNN_OK) {
        struct cnn_image_found found = {sizeof found, 1, 0, 0, 0, 0};
        rc = cnn_image_to_mnist_found(&img, px, &found);
        *objects = found.objects;
        cnn_image_free(&img);
        if (rc == CNN_ERR_NODIGIT) {
            set_error(r, 400, "image: no digit found");
            return -1;
        }
    }
    if (rc == CNN_OK) return 0;
    set_error(r, rc == CNN_ERR_NOMEM ? 500 : 400, "%s", cnn_errmsg());
    return -1;
}

/* A worker's job: r's reply, a prediction or an error. */
static void predict(struct worker *w, struct request *r) {
    const struct serve_models *m = &w->s->models;
    if (r->too_big) {
        set_error(r, 413, "request body over the limit of %d bytes", w->s->cfg.max_body);
        return;
    }
    uint8_t px[SERVE_PIXELS];
    int objects = 1;
    if (request_pixels(r, px, &objects) != 0) return;
    const int k = m->n_classes;
    float sum[10] = {0}, probs[10], typ, typ_sum = 0.0f;
    int typ_n = 0; /* an ensemble's typicality: the mean of its members' that have one */
    for (int i = 0; i < m->n; i++) {
        if (cli_predict_one(m->m[i], w->ctx[i], px, probs, &typ) != CNN_OK) {
            set_error(r, 500, "%s", cnn_errmsg());
            return;
        }
        for (int j = 0; j < k; j++) sum[j] += probs[j];
        if (typ >= 0.0f) typ_sum += typ, typ_n++;
    }
    for (int j = 0; j < k; j++) sum[j] /= (float)m->n;
    typ = typ_n ? typ_sum / (float)typ_n : -1.0f;
    serve_metrics_predicted();
    r->out_status = 200;
    char why[96];
    const int unsure = cli_unsure(sum, k, objects, typ, w->s->cfg.min_confidence,
                                  w->s->cfg.min_typicality, why, sizeof why);
    r->out_body = serve_predict_json(m, sum, typ, px, unsure ? why : NULL, objects, &r->out_len);
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    struct server *s = w->s;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        while (!s->head && !s->stopping) pthread_cond_wait(&s->ready, &s->lock);
        struct request *r = s->head;
        if (r && !(s->head = r->next)) s->tail = NULL;
        pthread_mutex_unlock(&s->lock);
        if (!r) return NULL; /* stopping, and the queue is empty */
        predict(w, r);
        atomic_store(&r->state, ANSWERED);
        MHD_resume_connection(r->conn);
    }
}

/* A prediction's body is in: suspend its connection and queue it, both under the lock, so
 * that once workers_stop has set stopping no connection is suspended any more (the library
 * must not be stopped with one suspended): from then on the answer is 503. The suspension
 * comes first, since a worker may take the job and resume the connection at once. */
static enum MHD_Result enqueue(struct server *s, struct MHD_Connection *c, struct request *r) {
    pthread_mutex_lock(&s->lock);
    if (s->stopping) {
        pthread_mutex_unlock(&s->lock);
        return reply_error(c, r, 503, MHD_HTTP_HEADER_CONNECTION, "close",
                           "server shutting down");
    }
    r->conn = c;
    r->next = NULL;
    atomic_store(&r->state, QUEUED);
    MHD_suspend_connection(c);
    if (s->tail)
        s->tail->next = r;
    else
        s->head = r;
    s->tail = r;
    pthread_cond_signal(&s->ready);
    pthread_mutex_unlock(&s->lock);
    return MHD_YES;
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
    if (!r->predict) return answer(s, c, r, url, method);
    const int state = atomic_load(&r->state);
    if (state == RECEIVING) return enqueue(s, c, r);
    return state == ANSWERED ? send_built(c, r, NULL, NULL) : MHD_YES;
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
    free(r->out_body);
    free(r);
    *req_cls = NULL;
}

/* ---- start, run, stop ----------------------------------------------------------------------- */

static int parse_args(int argc, char **argv, struct serve_cfg *cfg) {
    enum { O_HOST = 256, O_PORT, O_WORKERS, O_MAXCONN, O_PENDING, O_TIMEOUT, O_BODY, O_CONF,
           O_TYP };
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},         {"host", required_argument, 0, O_HOST},
        {"port", required_argument, 0, O_PORT},       {"workers", required_argument, 0, O_WORKERS},
        {"max-connections", required_argument, 0, O_MAXCONN},
        {"max-pending", required_argument, 0, O_PENDING},
        {"timeout", required_argument, 0, O_TIMEOUT}, {"max-body", required_argument, 0, O_BODY},
        {"min-confidence", required_argument, 0, O_CONF},
        {"min-typicality", required_argument, 0, O_TYP},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
    *cfg = (struct serve_cfg){.host = "127.0.0.1", .port = 8080, .workers = cnn_default_threads(),
                              .max_connections = 256, .max_pending = 128, .timeout = 10,
                              .max_body = 1 << 20, .min_confidence = (float)CLI_MIN_CONFIDENCE,
                              .min_typicality = (float)CLI_MIN_TYPICALITY};
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
        case O_CONF:
            rc = cli_float("--min-confidence", optarg, 0.0, 1.0, &cfg->min_confidence);
            break;
        case O_TYP:
            rc = cli_float("--min-typicality", optarg, 0.0, 1.0, &cfg->min_typicality);
            break;
        case 'h': usage(stdout); return -1;
        default: cli_bad_option(argc, argv, ch); cli_usage_hint("serve"); return 2;
        }
    }
    if (rc != 0) return 2;
    if (optind < argc) {
        cli_err("serve: unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (cfg->n_models == 0) {
        cli_err("serve: --model FILE is required");
        cli_usage_hint("serve");
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
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME;
    if (addr->ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    return MHD_start_daemon(
        flags, (uint16_t)s->cfg.port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->cfg.max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->cfg.timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HEADER_MEMORY, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, s, MHD_OPTION_END);
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

/* The workers' contexts, then their threads. Returns 0, or -1 with the message in err. */
static int workers_start(struct server *s, char *err, size_t errlen) {
    if (!(s->workers = calloc((size_t)s->cfg.workers, sizeof *s->workers))) {
        snprintf(err, errlen, "serve: out of memory");
        return -1;
    }
    for (int k = 0; k < s->cfg.workers; k++) {
        struct worker *w = &s->workers[k];
        w->s = s;
        for (int i = 0; i < s->models.n; i++) {
            if (cnn_ctx_new(s->models.m[i], 1, 1, &w->ctx[i]) != CNN_OK) {
                snprintf(err, errlen, "serve: %s", cnn_errmsg());
                return -1;
            }
        }
    }
    for (; s->n_started < s->cfg.workers; s->n_started++) {
        const int rc = pthread_create(&s->workers[s->n_started].thread, NULL, worker_main,
                                      &s->workers[s->n_started]);
        if (rc != 0) {
            snprintf(err, errlen, "serve: cannot start a worker thread: %s", strerror(rc));
            return -1;
        }
    }
    return 0;
}

/* Let the workers finish what is queued (resuming those connections), then join them. */
static void workers_stop(struct server *s) {
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_broadcast(&s->ready);
    pthread_mutex_unlock(&s->lock);
    for (int k = 0; k < s->n_started; k++) pthread_join(s->workers[k].thread, NULL);
    s->n_started = 0;
}

/* SIGINT and SIGTERM are blocked in the main thread, which waits for them, but threads started
 * before that (OpenBLAS starts its pool before main) do not block them: the kernel may hand
 * the signal to one of those, where its default action would kill the server. There this
 * handler notes it, and the main thread, waiting in slices, sees the note. */
static volatile sig_atomic_t stop_signal;
static void note_stop_signal(int sig) { stop_signal = sig; }

static void server_free(struct server *s) {
    workers_stop(s);
    for (int k = 0; s->workers && k < s->cfg.workers; k++)
        for (int i = 0; i < s->models.n; i++) cnn_ctx_free(s->workers[k].ctx[i]);
    free(s->workers);
    serve_models_free(&s->models);
    pthread_cond_destroy(&s->ready);
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
    cli_reuse_heap();
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.ready, NULL);
    /* Threads started from here inherit this mask, so SIGINT and SIGTERM reach sigwait below. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    struct sigaction sa = {.sa_handler = note_stop_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (workers_start(&s, err, sizeof err) != 0) {
        cli_err("%s", err);
        server_free(&s);
        return 1;
    }
    errno = 0;
    struct MHD_Daemon *d = start(&s, &addr);
    if (!d) {
        cli_err("serve: cannot listen on %s port %d: %s", s.cfg.host, s.cfg.port,
                errno ? strerror(errno) : "libmicrohttpd refused to start");
        server_free(&s);
        return 1;
    }
    print_url(d, &s.cfg);
    int sig = 0;
    const struct timespec slice = {0, 100 * 1000 * 1000};
    while (sig <= 0 && !(sig = stop_signal)) sig = sigtimedwait(&stop, NULL, &slice);
    /* No new connections; every queued prediction answered and its connection resumed (the
     * library must not be stopped with a connection suspended); then close them all. */
    const MHD_socket listening = MHD_quiesce_daemon(d);
    workers_stop(&s);
    MHD_stop_daemon(d);
    if (listening != MHD_INVALID_SOCKET) close(listening); /* ours once the daemon is stopped */
    fprintf(stderr, "mnist: serve: %s, stopped\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    server_free(&s);
    return 0;
}
