/*
 * fuzz_request.c - libFuzzer harness for what `mnist serve` reads from a request body and
 * writes back: serve_parse_pixels (jansson, then the shape and range checks) and
 * serve_error_json (the error reply, which may quote text a client sent: a path, a method, a
 * Content-Type).
 *
 * Contracts checked:
 *   - parse returns 0 or -1, and on -1 a non-empty one-line message;
 *   - on 0, re-encoding the 784 pixels and parsing them again gives the same pixels;
 *   - the error reply for any message, the input itself taken as one, is a JSON object whose
 *     "error" string jansson reads back; when the message is valid UTF-8 without NULs it is the
 *     message itself.
 *
 * Reproduce a finding: build/fuzz/fuzz_request path/to/input
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../cli/serve.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}

static void check_parse(const uint8_t *data, size_t size) {
    uint8_t px[SERVE_PIXELS], again[SERVE_PIXELS];
    char err[256];
    err[0] = '\0';
    const int rc = serve_parse_pixels((const char *)data, size, px, err, sizeof err);
    if (rc != 0 && rc != -1) abort();
    if (rc == -1) {
        if (err[0] == '\0' || strchr(err, '\n')) abort();
        return;
    }
    char doc[SERVE_PIXELS * 4 + 32];
    size_t n = (size_t)snprintf(doc, sizeof doc, "{\"pixels\":[");
    for (int i = 0; i < SERVE_PIXELS; i++)
        n += (size_t)snprintf(doc + n, sizeof doc - n, "%s%u", i ? "," : "", px[i]);
    n += (size_t)snprintf(doc + n, sizeof doc - n, "]}");
    if (serve_parse_pixels(doc, n, again, err, sizeof err) != 0) abort();
    if (memcmp(px, again, sizeof px) != 0) abort();
}

static void check_error_reply(const uint8_t *data, size_t size) {
    char *msg = malloc(size + 1);
    if (!msg) return;
    memcpy(msg, data, size);
    msg[size] = '\0';
    size_t len = 0;
    char *reply = serve_error_json(msg, &len);
    if (!reply) abort();
    json_error_t je;
    json_t *root = json_loadb(reply, len, 0, &je);
    const json_t *e = root ? json_object_get(root, "error") : NULL;
    if (!e || !json_is_string(e)) abort();
    /* valid UTF-8 without NULs comes back as it was sent */
    json_t *as_string = json_stringn(msg, size);
    if (as_string && strcmp(json_string_value(e), msg) != 0) abort();
    json_decref(as_string);
    json_decref(root);
    free(reply);
    free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_parse(data, size);
    if (size <= 4096) check_error_reply(data, size);
    return 0;
}
