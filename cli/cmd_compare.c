/*
 * cmd_compare.c - `mnist compare`: architecture experiments side by side.
 *
 *   mnist compare SPECFILE [--seeds N] [OPTIONS] --out compare.html
 *   mnist compare MODEL... --out compare.html
 *
 * A SPECFILE holds one entry a line, `NAME | SPEC [| OPTIONS]`, where OPTIONS are training
 * options as key=value words (epochs=3 lr=0.01 optimizer=sgd ...), and SPEC may be
 * `preset NAME` for a preset's network. One `recipe: OPTIONS` line, before the entries, sets
 * the recipe they share. `#` starts a comment. Each entry is trained with each seed through the
 * library's trainer (as `mnist train` does), its best model by validation accuracy saved under
 * the models directory, then measured on the test set. Validation accuracy alone ranks the
 * entries and draws the Pareto front; test accuracy is shown beside it, never used.
 *
 * Stopping and resuming: after every finished run the state file (beside --out) is rewritten
 * atomically and the page is written again. Run the same command again and the finished runs
 * whose spec, recipe and data are unchanged are skipped, and a run that was cut short goes on
 * from its checkpoint (written after every epoch, and where a signal stopped it) to the same
 * weights as if it had never stopped.
 * compare_train_one trains one run and returns its row, whatever drives the loop: one process
 * going through the runs in order, or, with --distributed (mpirun -np P mnist compare
 * SPECFILE --distributed ...), rank 0 dealing them out in the same order to whichever rank is
 * free, itself included (see "the sweep" below).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <zlib.h>

#include "cli.h"
#include "dist.h"
#include "report.h"

#define MAX_ENTRIES 64
#define MAX_OVERRIDES 16

static volatile sig_atomic_t stop_flag = 0;

static void on_stop_signal(int sig) {
    stop_flag = sig;
    signal(sig, SIG_DFL); /* a second one ends the program at once */
}

static void usage(FILE *f) {
    fputs("usage: mnist compare SPECFILE [OPTIONS] --out compare.html\n"
          "       mnist compare MODEL... [--data DIR] --out compare.html\n"
          "Trains every entry of SPECFILE with the same recipe and seeds (or takes trained\n"
          "models), then ranks them by validation accuracy: parameters, MFLOPs, training time,\n"
          "images/s, validation and test accuracy, and validation error against training cost\n"
          "with the Pareto front. The test set is reported, never used to choose.\n"
          "SPECFILE: one entry a line, `NAME | SPEC [| OPTIONS]`; SPEC may be `preset NAME`;\n"
          "OPTIONS are key=value: epochs batch lr optimizer (sgd|adam|adamw) momentum nesterov\n"
          "schedule (constant|step|cosine|onecycle) warmup min-lr weight-decay label-smoothing\n"
          "ema augment (none|affine|elastic). A `recipe: OPTIONS` line before the entries sets\n"
          "what they share. Precedence: defaults, recipe line, the entry's options, the flags.\n"
          "  --out FILE        the page (default compare.html, unless --json is given)\n"
          "  --json FILE       the leaderboard and every run as JSON ('-': stdout)\n"
          "  --models DIR      where the trained models go (default: OUT less .html, .models)\n"
          "  --seeds N         train each entry with N seeds, from --seed on (default 1)\n"
          "  --seed N          the first seed (default 1)\n"
          "  --epochs N, --batch N, --lr X, --optimizer NAME, --schedule NAME, --augment NAME\n"
          "                    override every entry's recipe\n"
          "  --data DIR        IDX files (default data/mnist)\n"
          "  --limit N         train on the first N training images (default: all)\n"
          "  --val N           images held out for validation (default 5000, at least 1)\n"
          "  --x NAME          the plot's cost axis: flops (default) or seconds\n"
          "  --threads N       (default: all cores)\n"
          "  --quiet           no line per epoch\n"
          "  --distributed     mpirun -np P mnist compare SPECFILE --distributed ...: rank 0\n"
          "                    deals the runs out to whichever rank is free, itself included,\n"
          "                    and alone writes the state file and the page (needs make MPI=1)\n"
          "  --dist-timeout S  end the job when a rank says nothing for S seconds while it\n"
          "                    trains, or rank 0 does not answer (default 120)\n"
          "The state file (OUT less .html, .state) records finished runs: run the same command\n"
          "again after a stop and they are skipped.\n",
          f);
}

struct sweep;

struct compare {
    struct compare_entry e[MAX_ENTRIES];
    int n_e;
    struct compare_run *runs;
    int n_runs, cap_runs;
    struct cnn_train_cfg base;       /* defaults and the file's recipe line */
    const char *over[MAX_OVERRIDES]; /* the flags' key=value, applied last */
    char over_buf[MAX_OVERRIDES][96];
    int n_over, seeds, threads, quiet, x_seconds, limit, val, from_models;
    unsigned long data_crc; /* of the training and test sets: a run counts on the same data */
    unsigned long long seed0;
    const char *data, *out, *json, *models_arg;
    FILE *say; /* progress and the last line: stdout, or stderr when --json - takes stdout */
    char state[1100], models[1100];
    struct cnn_dataset train, test;
    int distributed, rank, ranks; /* --distributed: this rank of how many (else 0 of 1) */
    float dist_timeout;           /* 0 until given */
    struct sweep *sweep;          /* while the runs are trained: who trains which */
};

/* ---- recipes ------------------------------------------------------------------------------ */

static int pick(const char *where, const char *v, const char *const *names, int n, int *out) {
    for (int i = 0; i < n; i++)
        if (!strcmp(v, names[i])) {
            *out = i;
            return 0;
        }
    cli_err("%s: unknown value '%s'", where, v);
    return -1;
}

/* One key=value training option into cfg; where names it in errors ("FILE:LINE: lr"). */
static int recipe_option(struct cnn_train_cfg *c, const char *at, const char *kv) {
    static const char *const optim[] = {"sgd", "adam", "adamw"};
    static const char *const sched[] = {"constant", "step", "cosine", "onecycle"};
    char key[32], where[160];
    const char *eq = strchr(kv, '=');
    const char *v = eq ? eq + 1 : "1";
    snprintf(key, sizeof key, "%.*s", eq ? (int)(eq - kv) : (int)strlen(kv), kv);
    if (!strcmp(at, "--"))
        snprintf(where, sizeof where, "--%s", key); /* a flag given on the command line */
    else
        snprintf(where, sizeof where, "%s: %s", at, key);
    int kind;
    if (!strcmp(key, "epochs")) return cli_int(where, v, 1, 100000, &c->epochs);
    if (!strcmp(key, "batch")) return cli_int(where, v, 1, 65536, &c->batch);
    if (!strcmp(key, "lr")) return cli_float(where, v, 1e-8, 10, &c->sched.lr);
    if (!strcmp(key, "momentum")) return cli_float(where, v, 0, 0.999, &c->optim.momentum);
    if (!strcmp(key, "nesterov")) return cli_int(where, v, 0, 1, &c->optim.nesterov);
    if (!strcmp(key, "warmup")) return cli_float(where, v, 0, 0.99, &c->sched.warmup);
    if (!strcmp(key, "min-lr")) return cli_float(where, v, 0, 10, &c->sched.min_lr);
    if (!strcmp(key, "weight-decay")) return cli_float(where, v, 0, 1, &c->optim.weight_decay);
    if (!strcmp(key, "label-smoothing")) return cli_float(where, v, 0, 0.99, &c->label_smoothing);
    if (!strcmp(key, "ema")) return cli_float(where, v, 0, 0.999999, &c->ema);
    if (!strcmp(key, "schedule")) return pick(where, v, sched, 4, &c->sched.kind);
    if (!strcmp(key, "augment"))
        return pick(where, v, cli_augment_names, CNN_AUG_LEVELS, &c->augment);
    if (!strcmp(key, "optimizer")) {
        if (pick(where, v, optim, 3, &kind)) return -1;
        const float wd = c->optim.weight_decay;
        cnn_optim_cfg_default(&c->optim, kind);
        c->optim.weight_decay = wd;
        return 0;
    }
    cli_err("%s: unknown training option (see `mnist compare --help`)", where);
    return -1;
}

/* Space-separated key=value words of s (changed in place) into cfg. */
static int recipe_options(struct cnn_train_cfg *cfg, const char *at, char *s) {
    for (char *save, *w = strtok_r(s, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
        if (recipe_option(cfg, at, w)) return -1;
    return 0;
}

/* The line that says what a run was: a finished run counts while this is unchanged. */
static void entry_key(const struct compare *c, struct compare_entry *e) {
    const struct cnn_train_cfg *g = &e->cfg;
    snprintf(e->key, sizeof e->key,
             "%s | epochs=%d batch=%d optim=%d mom=%g nest=%d b1=%g b2=%g eps=%g wd=%g all=%d "
             "sched=%d lr=%g min=%g step=%g gamma=%g warm=%g ls=%g aug=%d | limit=%d val=%d "
             "data=%08lx",
             e->spec, g->epochs, g->batch, g->optim.kind, (double)g->optim.momentum,
             g->optim.nesterov, (double)g->optim.beta1, (double)g->optim.beta2,
             (double)g->optim.eps, (double)g->optim.weight_decay, g->optim.decay_all, g->sched.kind,
             (double)g->sched.lr, (double)g->sched.min_lr, (double)g->sched.step_epochs,
             (double)g->sched.gamma, (double)g->sched.warmup, (double)g->label_smoothing,
             g->augment, c->limit, c->val, c->data_crc);
    if (g->ema > 0.0f) { /* only then: the keys of runs without it stay as they were */
        const size_t len = strlen(e->key);
        snprintf(e->key + len, sizeof e->key - len, " ema=%g", (double)g->ema);
    }
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && strchr(" \t\r\n", s[n - 1])) s[--n] = '\0';
    return s;
}

/* Name, spec and options of one entry line (fields split at '|', changed in place). */
static int parse_entry(struct compare *c, const char *at, char *line) {
    char *bar1 = strchr(line, '|'), *bar2 = bar1 ? strchr(bar1 + 1, '|') : NULL;
    if (!bar1) {
        cli_err("%s: expected `NAME | SPEC [| OPTIONS]`", at);
        return -1;
    }
    *bar1 = '\0';
    if (bar2) *bar2 = '\0';
    const char *name = trim(line), *spec = trim(bar1 + 1);
    char *opts = bar2 ? trim(bar2 + 1) : "";
    if (!*name || strlen(name) >= sizeof c->e[0].name ||
        strspn(name, "abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(name) ||
        name[0] == '.') {
        cli_err("%s: name '%s' must be 1-47 letters, digits, '.', '_' or '-' (it names files)", at,
                name);
        return -1;
    }
    for (int i = 0; i < c->n_e; i++)
        if (!strcmp(c->e[i].name, name)) {
            cli_err("%s: a second entry named '%s'", at, name);
            return -1;
        }
    if (c->n_e == MAX_ENTRIES) {
        cli_err("%s: more than %d entries", at, MAX_ENTRIES);
        return -1;
    }
    struct compare_entry *e = &c->e[c->n_e];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->options, sizeof e->options, "%s", opts);
    if (!strncmp(spec, "preset ", 7)) {
        const struct cli_preset *p = cli_preset_find(trim((char *)spec + 7));
        if (!p) {
            cli_err("%s: unknown preset '%s'", at, spec + 7);
            return -1;
        }
        spec = p->spec;
    }
    struct cnn_model *m; /* checked on the training images' size, loaded before */
    if (cli_model_for_size(spec, c->train.h, c->train.w, at, c->data, &m) != CNN_OK) return -1;
    snprintf(e->spec, sizeof e->spec, "%s", cnn_model_spec(m));
    cnn_model_free(m);
    e->cfg = c->base;
    if (recipe_options(&e->cfg, at, opts)) return -1;
    for (int i = 0; i < c->n_over; i++)
        if (recipe_option(&e->cfg, "--", c->over[i])) return -1;
    c->n_e++;
    return 0;
}

/* The entries of a spec file. 0, or -1 after printing the error (naming the line). */
static int load_specfile(struct compare *c, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        cli_err("%s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL, at[600];
    size_t cap = 0;
    int no = 0, rc = 0;
    while (rc == 0 && getline(&line, &cap, f) >= 0) {
        snprintf(at, sizeof at, "%.500s:%d", path, ++no);
        char *hash = strchr(line, '#'), *s;
        if (hash) *hash = '\0';
        s = trim(line);
        if (!*s) continue;
        if (!strncmp(s, "recipe:", 7)) {
            if (c->n_e) {
                cli_err("%s: the recipe line must come before the entries", at);
                rc = -1;
            } else {
                rc = recipe_options(&c->base, at, s + 7);
            }
        } else {
            rc = parse_entry(c, at, s);
        }
    }
    free(line);
    fclose(f);
    if (rc == 0 && c->n_e == 0) {
        cli_err("%s: no entries (lines `NAME | SPEC [| OPTIONS]`)", path);
        rc = -1;
    }
    return rc;
}

/* ---- the state file ----------------------------------------------------------------------- */

static void state_text(FILE *f, const struct compare *c) {
    fputs("{\"version\":1,\"runs\":[", f);
    for (int i = 0; i < c->n_runs; i++) {
        const struct compare_run *r = &c->runs[i];
        fputs(i ? ",\n{\"entry\":" : "\n{\"entry\":", f);
        cli_json_str(f, c->e[r->entry].name);
        fputs(",\"key\":", f);
        cli_json_str(f, c->e[r->entry].key);
        fprintf(f,
                ",\"seed\":%llu,\"params\":%zu,\"mflops\":%.17g,\"train_flops\":%.17g,"
                "\"seconds\":%.17g,\"images_per_s\":%.17g,\"val_acc\":%.17g,"
                "\"test_acc\":%.17g,\"model\":",
                r->seed, r->params, r->mflops, r->train_flops, r->seconds, r->images_per_s,
                r->val_acc, r->test_acc);
        cli_json_str(f, r->model);
        fputc('}', f);
    }
    fputs("]}\n", f);
}

static void state_of(FILE *f, const void *c) {
    state_text(f, c);
}

static int add_run(struct compare *c, const struct compare_run *r) {
    if (c->n_runs == c->cap_runs) {
        const int cap = c->cap_runs ? 2 * c->cap_runs : 16;
        struct compare_run *p = realloc(c->runs, sizeof *p * (size_t)cap);
        if (!p) return -1;
        c->runs = p, c->cap_runs = cap;
    }
    int at = c->n_runs; /* in the order of entries and seeds, whichever finished first */
    while (at > 0 && (c->runs[at - 1].entry > r->entry ||
                      (c->runs[at - 1].entry == r->entry && c->runs[at - 1].seed > r->seed)))
        at--;
    memmove(c->runs + at + 1, c->runs + at, sizeof *c->runs * (size_t)(c->n_runs - at));
    c->runs[at] = *r;
    c->n_runs++;
    return 0;
}

/* One run of the state file back into c, if it still counts: its entry is there with the same
 * key, its seed is one of this command's, and its model file is still there. */
static void state_run(struct compare *c, const json_t *o) {
    const char *name = json_string_value(json_object_get(o, "entry"));
    const char *key = json_string_value(json_object_get(o, "key"));
    const char *model = json_string_value(json_object_get(o, "model"));
    struct compare_run r = {0};
    r.seed = (unsigned long long)json_integer_value(json_object_get(o, "seed"));
    for (r.entry = 0; r.entry < c->n_e; r.entry++)
        if (name && !strcmp(c->e[r.entry].name, name)) break;
    if (r.entry == c->n_e || !key || strcmp(key, c->e[r.entry].key) || !model ||
        strlen(model) >= sizeof r.model || access(model, R_OK) != 0 || r.seed < c->seed0 ||
        r.seed >= c->seed0 + (unsigned)c->seeds)
        return;
    for (int i = 0; i < c->n_runs; i++)
        if (c->runs[i].entry == r.entry && c->runs[i].seed == r.seed) return;
    strcpy(r.model, model);
    r.params = (size_t)json_integer_value(json_object_get(o, "params"));
    const char *const keys[] = {"mflops",       "train_flops", "seconds",
                                "images_per_s", "val_acc",     "test_acc"};
    double *const dst[] = {&r.mflops,       &r.train_flops, &r.seconds,
                           &r.images_per_s, &r.val_acc,     &r.test_acc};
    for (int k = 0; k < 6; k++) *dst[k] = json_number_value(json_object_get(o, keys[k]));
    if (add_run(c, &r) == 0 && !c->quiet)
        fprintf(c->say, "%s seed %llu: finished before, skipped (validation %.2f%%)\n",
                c->e[r.entry].name, r.seed, 100.0 * r.val_acc);
}

/* The finished runs recorded in the state file, if there is one. 0, or -1 after the error. */
static int load_state(struct compare *c) {
    if (access(c->state, F_OK) != 0) return 0;
    json_error_t jerr;
    json_t *root = json_load_file(c->state, JSON_REJECT_DUPLICATES, &jerr);
    const json_t *runs = json_object_get(root, "runs");
    if (!root || json_integer_value(json_object_get(root, "version")) != 1 ||
        !json_is_array(runs)) {
        cli_err("%s: not a state file of mnist compare (%s); remove it to start again", c->state,
                root ? "no version 1 and runs" : jerr.text);
        json_decref(root);
        return -1;
    }
    for (size_t i = 0; i < json_array_size(runs); i++) state_run(c, json_array_get(runs, i));
    json_decref(root);
    return 0;
}

/* ---- one run ------------------------------------------------------------------------------ */

/* A run's checkpoint (MODEL less .model, plus .ckpt) holds, in its model's metadata, what it is
 * (compare.key: the crc32 of the entry's key and the seed) and the training seconds so far
 * (compare.seconds), so that a stopped run goes on only from a checkpoint of itself. */
struct run_ctx {
    const struct compare *c;
    const struct compare_entry *e;
    struct cnn_model *model; /* the trainer's */
    const char *model_path;
    char ckpt[1100], key[24];
    unsigned long long seed;
    double t0, seconds_before; /* when this process began training it; seconds before that */
};

static void between_steps(struct sweep *w);

static void run_on_batch(const struct cnn_batch_stats *s, void *user) {
    const struct run_ctx *r = user;
    (void)s;
    if (r->c->sweep) between_steps(r->c->sweep);
}

static void run_on_epoch(const struct cnn_epoch_stats *s, void *user) {
    const struct run_ctx *r = user;
    if (r->c->quiet) return;
    fprintf(r->c->say,
            "%s seed %llu: epoch %d/%d  train loss %.4f acc %.2f%%  val acc %.2f%%  %.1f s%s\n",
            r->e->name, r->seed, s->epoch, s->epochs, s->train_loss, 100.0 * s->train_acc,
            100.0 * s->val_acc, s->seconds, s->improved ? "  (best)" : "");
    fflush(r->c->say);
}

static int run_on_best(const struct cnn_model *m, void *user) {
    struct run_ctx *r = user;
    (void)cnn_model_set_meta(r->model, "compare.key", NULL); /* not the saved model's business */
    (void)cnn_model_set_meta(r->model, "compare.seconds", NULL);
    return cnn_model_save(m, r->model_path);
}

static int run_on_checkpoint(const struct cnn_trainer *t, void *user) {
    struct run_ctx *r = user;
    char secs[32];
    snprintf(secs, sizeof secs, "%.3f", r->seconds_before + cli_now() - r->t0);
    (void)cnn_model_set_meta(r->model, "compare.key", r->key);
    (void)cnn_model_set_meta(r->model, "compare.seconds", secs);
    return cnn_trainer_save(t, r->ckpt);
}

/* The run's trainer: from its checkpoint if there is one of this very run, else new. */
static int start_run(struct run_ctx *r, const struct cnn_train_cfg *cfg, struct cnn_model **m,
                     struct cnn_trainer **t) {
    if (access(r->ckpt, R_OK) == 0 && cnn_trainer_resume(r->ckpt, cfg->threads, m, t) == CNN_OK) {
        const char *key = cnn_model_meta(*m, "compare.key");
        const char *secs = cnn_model_meta(*m, "compare.seconds");
        if (key && secs && !strcmp(key, r->key)) {
            r->seconds_before = strtod(secs, NULL);
            if (!r->c->quiet)
                fprintf(r->c->say, "%s seed %llu: going on from %s after epoch %d\n", r->e->name,
                        r->seed, r->ckpt, cnn_trainer_epochs_done(*t));
            return CNN_OK;
        }
        cnn_trainer_free(*t), cnn_model_free(*m); /* another run's: start afresh */
        *t = NULL, *m = NULL;
    }
    struct cnn_rng rng;
    int rc = cnn_model_new(r->e->spec, 1, r->c->train.h, r->c->train.w, m);
    if (rc != CNN_OK) return rc;
    cnn_rng_seed(&rng, cfg->seed);
    cnn_model_init_params(*m, &rng);
    return cnn_trainer_new(*m, cfg, t);
}

/* Size, cost and the test-set figures of the model saved at row->model. 0, or 1. */
static int measure(const struct compare *c, const struct cnn_model *m, struct compare_run *row,
                   double train_images, int epochs) {
    double mflops = 0;
    for (int i = 0; i < cnn_model_n_layers(m); i++) {
        struct cnn_layer_info li;
        cnn_model_layer_info(m, i, &li);
        mflops += li.mflops;
    }
    row->params = cnn_model_n_params(m);
    row->mflops = mflops;
    row->train_flops = 3.0 * mflops * 1e6 * train_images * epochs; /* forward + backward */
    struct report_eval ev;
    memset(&ev, 0, sizeof ev);
    if (report_eval_run(m, row->model, &c->test, NULL, c->threads, 0, &ev)) return 1;
    row->test_acc = ev.m.accuracy;
    row->images_per_s = ev.images_per_s;
    report_eval_free(&ev);
    return 0;
}

/* What a run of entry e is, in a number: the crc32 of its key. */
static unsigned long key_crc(const struct compare_entry *e) {
    const uLong kc = crc32(crc32(0L, Z_NULL, 0), (const Bytef *)e->key, (uInt)strlen(e->key));
    return kc & 0xffffffffUL;
}

/* Train entry i with one seed, exactly as `mnist train` would with that recipe (the library's
 * trainer, the best epoch by validation saved, a checkpoint after every epoch), then measure
 * it on the test set. The row out is the run's line of the leaderboard. Returns CNN_OK,
 * CNN_ERR_INTERRUPTED (a stop signal; the checkpoint is saved), or 1 after printing the error. */
static int compare_train_one(const struct compare *c, int i, unsigned long long seed,
                             struct compare_run *row) {
    const struct compare_entry *e = &c->e[i];
    memset(row, 0, sizeof *row);
    row->entry = i, row->seed = seed, row->seconds = -1;
    snprintf(row->model, sizeof row->model, "%.1000s/%s-s%llu.model", c->models, e->name, seed);
    struct cnn_train_cfg cfg = e->cfg;
    cfg.seed = seed, cfg.threads = c->threads, cfg.limit = c->limit, cfg.val = c->val;
    struct run_ctx r = {c, e, NULL, row->model, "", "", seed, 0, 0};
    snprintf(r.ckpt, sizeof r.ckpt, "%.1000s/%s-s%llu.ckpt", c->models, e->name, seed);
    snprintf(r.key, sizeof r.key, "%08lx-%llu", key_crc(e), seed);
    struct cnn_model *m = NULL, *best = NULL;
    struct cnn_trainer *t = NULL;
    int rc = start_run(&r, &cfg, &m, &t);
    r.model = m, r.t0 = cli_now();
    const struct cnn_train_hooks hooks = {
        sizeof hooks, run_on_batch, run_on_epoch, run_on_best, run_on_checkpoint, &r, &stop_flag};
    if (rc == CNN_OK) rc = cnn_trainer_run(t, &c->train, &hooks);
    if (rc == CNN_OK) {
        row->seconds = r.seconds_before + cli_now() - r.t0;
        row->val_acc = cnn_trainer_best_val(t);
        rc = cnn_model_load(row->model, &best);
    }
    if (rc == CNN_OK) {
        const int usable = c->limit && c->limit < c->train.n ? c->limit : c->train.n;
        rc = measure(c, best, row, usable - c->val, cfg.epochs) ? -1 : CNN_OK;
        if (rc == CNN_OK) unlink(r.ckpt); /* the run is done: its model is what stays */
    } else if (rc != CNN_ERR_INTERRUPTED) {
        cli_err("%s: %s", e->name, cnn_errmsg());
    }
    cnn_trainer_free(t);
    cnn_model_free(m);
    cnn_model_free(best);
    return rc == CNN_OK || rc == CNN_ERR_INTERRUPTED ? rc : 1;
}

/* ---- trained models as entries ------------------------------------------------------------ */

static int model_entry(struct compare *c, const char *path) {
    struct cnn_model *m;
    if (cnn_model_load(path, &m) != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        return -1;
    }
    struct compare_entry *e = &c->e[c->n_e];
    memset(e, 0, sizeof *e);
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    const size_t n = strlen(base) > 6 && !strcmp(base + strlen(base) - 6, ".model")
                         ? strlen(base) - 6
                         : strlen(base);
    snprintf(e->name, sizeof e->name, "%.*s", (int)(n < 47 ? n : 47), base);
    snprintf(e->spec, sizeof e->spec, "%s", cnn_model_spec(m));
    const char *const keys[] = {"recipe.epochs",   "recipe.optimizer", "recipe.lr",
                                "recipe.schedule", "recipe.augment",   "recipe.seed"};
    for (int k = 0, at = 0; k < 6 && at < (int)sizeof e->options - 1; k++)
        if (cnn_model_meta(m, keys[k]))
            at += snprintf(e->options + at, sizeof e->options - (size_t)at, "%s%s=%s",
                           at ? " " : "", keys[k] + 7, cnn_model_meta(m, keys[k]));
    struct compare_run row = {.entry = c->n_e, .seconds = -1, .val_acc = -1};
    snprintf(row.model, sizeof row.model, "%s", path);
    const char *va = cnn_model_meta(m, "val_acc"), *ti = cnn_model_meta(m, "train_images");
    const char *ep = cnn_model_meta(m, "epochs"), *sd = cnn_model_meta(m, "recipe.seed");
    if (va) row.val_acc = strtod(va, NULL);
    if (sd) row.seed = strtoull(sd, NULL, 10);
    c->n_e++;
    int rc = measure(c, m, &row, ti ? strtod(ti, NULL) : NAN, ep ? atoi(ep) : 0);
    if (!ti || !ep) row.train_flops = NAN;
    if (rc == 0 && add_run(c, &row)) cli_err("out of memory"), rc = 1;
    cnn_model_free(m);
    return rc ? -1 : 0;
}

/* ---- the command -------------------------------------------------------------------------- */

/* A flag that overrides every entry's recipe, kept as key=value. */
static int add_override(struct compare *c, const char *key, const char *v) {
    if (c->n_over == MAX_OVERRIDES) return -1;
    snprintf(c->over_buf[c->n_over], sizeof c->over_buf[0], "%s=%.80s", key, v);
    struct cnn_train_cfg check = c->base;
    if (recipe_option(&check, "--", c->over_buf[c->n_over])) return -1;
    c->over[c->n_over] = c->over_buf[c->n_over];
    c->n_over++;
    return 0;
}

static const struct option opts[] = {{"out", required_argument, 0, 'o'},
                                     {"json", required_argument, 0, 'j'},
                                     {"models", required_argument, 0, 'M'},
                                     {"seeds", required_argument, 0, 'S'},
                                     {"seed", required_argument, 0, 's'},
                                     {"data", required_argument, 0, 'd'},
                                     {"limit", required_argument, 0, 'n'},
                                     {"val", required_argument, 0, 'v'},
                                     {"x", required_argument, 0, 'x'},
                                     {"threads", required_argument, 0, 't'},
                                     {"quiet", no_argument, 0, 'q'},
                                     {"distributed", no_argument, 0, 'D'},
                                     {"dist-timeout", required_argument, 0, 'T'},
                                     {"help", no_argument, 0, 'h'},
                                     {"epochs", required_argument, 0, 'O'},
                                     {"batch", required_argument, 0, 'O'},
                                     {"lr", required_argument, 0, 'O'},
                                     {"optimizer", required_argument, 0, 'O'},
                                     {"schedule", required_argument, 0, 'O'},
                                     {"augment", required_argument, 0, 'O'},
                                     {0, 0, 0, 0}};

static int take_flag(struct compare *c, int ch, int at, const char *v) {
    switch (ch) {
    case 'o':
        c->out = v;
        return 0;
    case 'j':
        c->json = v;
        return 0;
    case 'M':
        c->models_arg = v;
        return 0;
    case 'S':
        return cli_int("--seeds", v, 1, 100, &c->seeds);
    case 's':
        return cli_u64("--seed", v, &c->seed0);
    case 'd':
        c->data = v;
        return 0;
    case 'n':
        return cli_int("--limit", v, 2, 100000000, &c->limit);
    case 'v':
        return cli_int("--val", v, 1, 100000000, &c->val);
    case 't':
        return cli_int("--threads", v, 0, 1024, &c->threads);
    case 'q':
        c->quiet = 1;
        return 0;
    case 'D':
        c->distributed = 1;
        return 0;
    case 'T':
        return cli_float("--dist-timeout", v, 1, 1e6, &c->dist_timeout);
    case 'x':
        if (strcmp(v, "flops") && strcmp(v, "seconds")) {
            cli_err("--x: '%s' is neither 'flops' nor 'seconds'", v);
            return -1;
        }
        c->x_seconds = v[0] == 's';
        return 0;
    case 'O':
        return add_override(c, opts[at].name, v);
    default:
        return -1;
    }
}

/* Where the state file and the models go, from --out (or --json) and --models. */
static int set_paths(struct compare *c) {
    const char *out = c->out ? c->out : c->json && strcmp(c->json, "-") ? c->json : "compare";
    size_t n = strlen(out);
    if (n > 5 && (!strcmp(out + n - 5, ".html") || !strcmp(out + n - 5, ".json"))) n -= 5;
    if (n > 900 || (c->models_arg && strlen(c->models_arg) > 900)) {
        cli_err("--out: path too long");
        return -1;
    }
    snprintf(c->state, sizeof c->state, "%.*s.state", (int)n, out);
    if (c->models_arg)
        snprintf(c->models, sizeof c->models, "%s", c->models_arg);
    else
        snprintf(c->models, sizeof c->models, "%.*s.models", (int)n, out);
    return 0;
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct compare *c) {
    cnn_train_cfg_default(&c->base);
    c->seeds = 1, c->seed0 = 1, c->val = 5000, c->data = "data/mnist";
    optind = 1;
    opterr = 0;
    int ch, at = -1, bad = 0;
    while ((ch = getopt_long(argc, argv, ":h", opts, &at)) != -1) {
        if (ch == 'h') {
            usage(stdout);
            return 0;
        }
        if (ch == '?' || ch == ':') {
            cli_bad_option(argc, argv, ch);
            cli_usage_hint("compare");
            return 2;
        }
        bad |= take_flag(c, ch, at, optarg) != 0;
        at = -1;
    }
    if (bad) return 2;
    if (optind >= argc) {
        cli_err("compare: give a SPECFILE or MODEL files");
        cli_usage_hint("compare");
        return 2;
    }
    if (!c->out && !c->json) c->out = "compare.html";
    c->say = c->json && !strcmp(c->json, "-") ? stderr : stdout;
    if (c->limit && c->val >= c->limit) {
        cli_err("compare: --val %d leaves no training images of --limit %d", c->val, c->limit);
        return 2;
    }
    if (c->dist_timeout > 0 && !c->distributed) {
        cli_err("compare: --dist-timeout is for --distributed runs");
        return 2;
    }
    if (c->dist_timeout == 0) c->dist_timeout = 120.0f;
    if ((c->out && cli_check_replaced_output("--out", c->out)) ||
        (c->json && strcmp(c->json, "-") && cli_check_replaced_output("--json", c->json)) ||
        set_paths(c))
        return 2;
    return -1;
}

static int run_done(const struct compare *c, int entry, unsigned long long seed) {
    for (int i = 0; i < c->n_runs; i++)
        if (c->runs[i].entry == entry && c->runs[i].seed == seed) return 1;
    return 0;
}

/* The page and the JSON of the runs so far (JSON on stdout only when last). 0, or 1 after
 * printing the error. */
static int write_page(const struct compare *c, int last) {
    struct compare_page p = {c->e, c->n_e, c->runs, c->n_runs, c->x_seconds, "", ""};
    const int usable = c->limit && c->limit < c->train.n ? c->limit : c->train.n;
    if (c->from_models) {
        snprintf(p.source, sizeof p.source,
                 "test set: %.500s (%d images of %d\xc3\x97%d); validation accuracy as recorded "
                 "in each model",
                 c->data, c->test.n, c->test.h, c->test.w);
    } else {
        snprintf(p.source, sizeof p.source,
                 "training: %d images (%d\xc3\x97%d) of %.400s, %d more held out for validation; "
                 "test: its test set (%d images)",
                 usable - c->val, c->train.h, c->train.w, c->data, c->val, c->test.n);
        compare_recipe_text(&c->base, p.recipe, sizeof p.recipe);
        for (int i = 0, n = (int)strlen(p.recipe); i < c->n_over && n < (int)sizeof p.recipe; i++)
            n += snprintf(p.recipe + n, sizeof p.recipe - (size_t)n, "%s--%s",
                          i ? ", " : "; for every entry ", c->over[i]);
    }
    if (c->out && report_write_file("--out", c->out, compare_html, &p)) return 1;
    /* --json - is one document on stdout: written once, at the end */
    if (!c->json || (!last && !strcmp(c->json, "-"))) return 0;
    return report_write_file("--json", c->json, compare_json, &p);
}

/* A finished run into the leaderboard, then the state file and the page. 0, or 1 after
 * printing the error. */
static int record_run(struct compare *c, const struct compare_run *row) {
    if (add_run(c, row)) {
        cli_err("out of memory");
        return 1;
    }
    return report_write_file("state", c->state, state_of, c) || write_page(c, 0) ? 1 : 0;
}

/* ---- the sweep: who trains which run ------------------------------------------------------ */

/* Runs are numbered entry * seeds + the seed's index. One process trains the unfinished ones in
 * that order. In a --distributed job rank 0 deals them out in that order, one at a time, to
 * whichever rank asks, itself included: between its own steps it answers the others. Every
 * finished run's row comes back to rank 0, which alone writes the state file and the page; a
 * rank writes only the model and the checkpoint of the run it trains. A stop signal on any
 * rank stops every run after its current step (each saves its checkpoint). A rank silent for
 * --dist-timeout seconds while it trains, or a rank 0 silent as long, ends the job; a rank
 * that dies is mpirun's to report. Messages (tags), all from or to rank 0; those from rank 0
 * are two long longs:
 *   ASK      rank -> 0    int 0: give me a run
 *   WORK     0 -> rank    {run, or -1: nothing left; the stop signal or 0}
 *   ROW      rank -> 0    struct compare_run: a finished run
 *   STOPPED  rank -> 0    int signal: its run was stopped, its checkpoint saved
 *   STOP     0 -> rank    {signal, 0}: stop your run
 *   BEAT     either way   int 0 or {0, 0}: still here (every quarter of --dist-timeout: a rank
 *                         while it trains, rank 0 to those waiting for the end)
 *   END      0 -> rank    {exit status, 0}: the sweep is over (each rank waits for it, then
 *                         leaves with rank 0's status) */
enum { MSG_ASK = 1, MSG_WORK, MSG_ROW, MSG_STOPPED, MSG_STOP, MSG_BEAT, MSG_END };

struct sweep {
    struct compare *c;
    int rank, ranks;  /* 0 of 1 without --distributed */
    int next;         /* the next run to look at */
    int status;       /* 1 once something failed: no run is started after that */
    int out;          /* ranks other than 0 not yet told that nothing is left */
    int stopping;     /* rank 0 has told the others to stop */
    int cut, n_cut;   /* runs stopped by a signal: the first, and how many */
    int *busy;        /* rank 0, per rank: the run it trains, -1 none, -2 told nothing is left */
    double *heard;    /* rank 0, per rank: when it last said something */
    double last_beat; /* when this rank last said it is alive (BEAT) */
};

static const struct compare_entry *run_entry(const struct compare *c, int run) {
    return &c->e[run / c->seeds];
}

static unsigned long long run_seed(const struct compare *c, int run) {
    return c->seed0 + (unsigned)(run % c->seeds);
}

/* The next run to train, unless a signal or a failure stops the sweep. 1 and *run, or 0. */
static int next_run(struct sweep *w, int *run) {
    const struct compare *c = w->c;
    for (; !stop_flag && !w->status && w->next < c->n_e * c->seeds; w->next++)
        if (!run_done(c, w->next / c->seeds, run_seed(c, w->next))) {
            *run = w->next++;
            return 1;
        }
    return 0;
}

static void announce(const struct sweep *w, int run, int rank) {
    const struct compare *c = w->c;
    if (c->quiet) return;
    fprintf(c->say, "==> %s seed %llu (%d of %d)", run_entry(c, run)->name, run_seed(c, run),
            run + 1, c->n_e * c->seeds);
    if (w->ranks > 1) fprintf(c->say, " on rank %d", rank);
    fputc('\n', c->say);
    fflush(c->say);
}

static void note_cut(struct sweep *w, int run) {
    if (run >= 0 && !w->n_cut++) w->cut = run;
}

/* Train a run here; on rank 0 its row is recorded. 0, CNN_ERR_INTERRUPTED, or 1. */
static int train_here(struct sweep *w, int run, struct compare_run *row) {
    const int rc = compare_train_one(w->c, run / w->c->seeds, run_seed(w->c, run), row);
    if (rc == CNN_ERR_INTERRUPTED) note_cut(w, run);
    if (rc == CNN_OK && w->rank == 0) w->status |= record_run(w->c, row);
    return rc;
}

/* Rank 0 to rank r: a message of two numbers; a failure ends the job. */
static void tell(int r, int tag, long long a, long long b) {
    if (cli_dist_send(r, tag, (const long long[2]){a, b}, 2 * sizeof(long long))) cli_dist_end(1);
}

/* Rank 0: the next run to rank r, or word that nothing is left (and whether to stop). */
static void give(struct sweep *w, int r) {
    int run;
    if (next_run(w, &run)) {
        w->busy[r] = run;
        announce(w, run, r);
        tell(r, MSG_WORK, run, stop_flag);
    } else {
        w->busy[r] = -2;
        w->out--;
        tell(r, MSG_WORK, -1, stop_flag);
    }
}

/* Rank 0: the end of the job when a rank has been silent too long (one that trains, or one
 * that has not asked again); now and then a word to those waiting for the end. */
static void watch_ranks(struct sweep *w) {
    for (int r = 1; r < w->ranks; r++)
        if (w->busy[r] != -2 && cli_now() - w->heard[r] > w->c->dist_timeout) {
            char what[160] = "";
            if (w->busy[r] >= 0)
                snprintf(what, sizeof what, " while it trains %s seed %llu",
                         run_entry(w->c, w->busy[r])->name, run_seed(w->c, w->busy[r]));
            cli_err("compare --distributed: no word from rank %d for %.0f s%s: it died or hangs "
                    "(--dist-timeout); ending the job",
                    r, (double)w->c->dist_timeout, what);
            cli_dist_end(1);
        }
    if (cli_now() - w->last_beat < w->c->dist_timeout / 4) return;
    for (int r = 1; r < w->ranks; r++)
        if (w->busy[r] == -2) tell(r, MSG_BEAT, 0, 0);
    w->last_beat = cli_now();
}

/* Rank 0: what the other ranks said (waiting up to wait_s for the first word), answered. */
static void serve(struct sweep *w, double wait_s) {
    union {
        struct compare_run row;
        int sig;
    } msg;
    for (;;) {
        int from = -1, tag = -1;
        size_t n = sizeof msg;
        const int got = cli_dist_recv(&from, &tag, &msg, &n, wait_s);
        if (got < 0) cli_dist_end(1);
        if (got == 0) break;
        wait_s = 0;
        w->heard[from] = cli_now();
        if (tag == MSG_ASK) {
            give(w, from);
        } else if (tag == MSG_ROW && n == sizeof msg.row) {
            w->busy[from] = -1;
            w->status |= record_run(w->c, &msg.row);
        } else if (tag == MSG_STOPPED && n == sizeof msg.sig) {
            note_cut(w, w->busy[from]);
            w->busy[from] = -1;
            if (!stop_flag) stop_flag = msg.sig;
        }
    }
    for (int r = 1; r < w->ranks && stop_flag && !w->stopping; r++)
        if (w->busy[r] >= 0) tell(r, MSG_STOP, stop_flag, 0);
    w->stopping |= stop_flag != 0;
    watch_ranks(w);
}

/* A rank other than 0: the next message under tag `want` from rank 0 into msg. A word to stop
 * on the way sets the stop flag. 0, or 1 after a message when rank 0 says nothing for
 * --dist-timeout seconds. */
static int hear(const struct sweep *w, int want, long long msg[2]) {
    int from, tag;
    do {
        size_t n = 2 * sizeof *msg;
        from = 0, tag = -1;
        if (cli_dist_recv(&from, &tag, msg, &n, w->c->dist_timeout) <= 0) {
            cli_err("compare --distributed: rank %d: no word from rank 0 for %.0f s: it died or "
                    "hangs (--dist-timeout); ending the job",
                    w->rank, (double)w->c->dist_timeout);
            return 1;
        }
        if (tag == MSG_STOP && !stop_flag) stop_flag = (sig_atomic_t)msg[0];
    } while (tag != want);
    return 0;
}

/* Between two steps of a run: rank 0 answers the others; another rank says it is alive now
 * and then, and looks for rank 0's word to stop. */
static void between_steps(struct sweep *w) {
    if (w->ranks < 2) return;
    if (w->rank == 0) {
        serve(w, 0);
        return;
    }
    if (cli_now() - w->last_beat >= w->c->dist_timeout / 4) {
        if (cli_dist_send(0, MSG_BEAT, (const int[]){0}, sizeof(int))) cli_dist_end(1);
        w->last_beat = cli_now();
    }
    int from = 0, tag = MSG_STOP;
    long long msg[2];
    size_t n = sizeof msg;
    if (cli_dist_recv(&from, &tag, msg, &n, 0) > 0 && !stop_flag) stop_flag = (sig_atomic_t)msg[0];
}

/* The sweep was stopped by a signal with runs unfinished: say how to go on. The exit
 * status. */
static int say_stopped(const struct sweep *w) {
    const struct compare *c = w->c;
    const int sig = stop_flag == SIGTERM ? SIGTERM : SIGINT;
    char during[160] = "";
    if (w->n_cut)
        snprintf(during, sizeof during, " during %s seed %llu", run_entry(c, w->cut)->name,
                 run_seed(c, w->cut));
    if (w->n_cut > 1)
        snprintf(during + strlen(during), sizeof during - strlen(during), " and %d more",
                 w->n_cut - 1);
    cli_err("stopped by %s%s; %d of %d runs finished, kept in %s; run the same command again to "
            "go on",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", during, c->n_runs, c->n_e * c->seeds, c->state);
    return 128 + sig;
}

/* Rank 0 (or the one process): every unfinished run trained here or dealt out, until each
 * rank has been told that nothing is left; then the end of the sweep to each. The exit
 * status. */
static int run_all(struct sweep *w) {
    struct compare_run row;
    int run;
    for (;;) {
        if (w->ranks > 1) serve(w, 0);
        if (next_run(w, &run)) {
            announce(w, run, 0);
            if (train_here(w, run, &row) > 0) w->status = 1;
        } else if (w->out > 0) {
            serve(w, 0.2);
        } else {
            break;
        }
    }
    const int status = w->status || !stop_flag || w->c->n_runs == w->c->n_e * w->c->seeds
                           ? w->status
                           : say_stopped(w);
    for (int r = 1; r < w->ranks; r++) tell(r, MSG_END, status, 0);
    return status;
}

/* A rank other than 0: ask rank 0 for a run, train it, send its row back, until nothing is
 * left; then wait for the end of the sweep (rank 0 may still train). The exit status. */
static int work(struct sweep *w) {
    const struct compare *c = w->c;
    long long msg[2];
    for (;;) {
        if (cli_dist_send(0, MSG_ASK, (const int[]){0}, sizeof(int)) || hear(w, MSG_WORK, msg))
            return 1;
        if (msg[0] < 0) break;
        const int run = (int)msg[0];
        if (run >= c->n_e * c->seeds) return 1; /* cannot be: the_same_runs agreed */
        struct compare_run row;
        w->last_beat = cli_now();
        int rc = train_here(w, run, &row);
        if (rc == CNN_ERR_INTERRUPTED)
            rc = cli_dist_send(0, MSG_STOPPED, (const int[]){stop_flag}, sizeof(int));
        else if (rc == CNN_OK)
            rc = cli_dist_send(0, MSG_ROW, &row, sizeof row);
        if (rc) return 1;
    }
    return hear(w, MSG_END, msg) ? 1 : (int)msg[0];
}

/* Whether every rank has the same runs: the same entries, recipes, data and seeds. 0, or 1
 * after a message. */
static int the_same_runs(const struct compare *c) {
    unsigned long v = (unsigned long)c->seeds * 1000003UL ^ (unsigned long)c->seed0;
    for (int i = 0; i < c->n_e; i++) v = v * 1000003UL ^ key_crc(&c->e[i]);
    const int same = cli_dist_same(v);
    if (same == 0 && c->rank == 0)
        cli_err("compare --distributed: the ranks' spec files, flags or data differ; give every "
                "rank the same");
    return same != 1;
}

/* Train what is not finished: here, or over the job's ranks. Then rank 0 writes the page. */
static int sweep(struct compare *c) {
    struct sweep w = {.c = c, .rank = c->rank, .ranks = c->ranks, .out = c->ranks - 1};
    if (c->ranks > 1) {
        if (the_same_runs(c)) return 1;
        w.busy = malloc(sizeof *w.busy * (size_t)c->ranks);
        w.heard = malloc(sizeof *w.heard * (size_t)c->ranks);
        if (!w.busy || !w.heard) {
            free(w.busy), free(w.heard);
            cli_err("out of memory");
            return 1;
        }
        for (int r = 0; r < c->ranks; r++) w.busy[r] = -1, w.heard[r] = cli_now();
        cli_dist_watch(c->dist_timeout);
    }
    c->sweep = &w;
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    int status = w.rank == 0 ? run_all(&w) : work(&w);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    c->sweep = NULL;
    free(w.busy), free(w.heard);
    if (w.rank != 0 || status != 0) return status;
    status = write_page(c, 1); /* also when every run was finished before */
    if (status == 0 && c->out)
        fprintf(c->say, "compare: %d runs; page written to %s\n", c->n_runs, c->out);
    return status;
}

/* A spec file: load it and the training data, and (rank 0) pick up the finished runs. -1 when
 * ready to train, else the exit status. */
static int compare_specs(struct compare *c, const char *path) {
    if (cnn_dataset_load_dir(c->data, "train", &c->train) != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        return 1;
    }
    if (c->train.h != c->test.h || c->train.w != c->test.w) {
        cli_err("compare: %s: the training images are %dx%d but the test images %dx%d", c->data,
                c->train.h, c->train.w, c->test.h, c->test.w);
        return 1;
    }
    if (load_specfile(c, path)) return 1;
    const int usable = c->limit && c->limit < c->train.n ? c->limit : c->train.n;
    if (c->val >= usable) {
        cli_err("compare: --val %d leaves no training images of the %d in %s", c->val, usable,
                c->data);
        return 2;
    }
    if (mkdir(c->models, 0777) != 0 && errno != EEXIST) {
        cli_err("--models: %s: cannot create: %s", c->models, strerror(errno));
        return 1;
    }
    const struct cnn_dataset *sets[2] = {&c->train, &c->test};
    uLong crc = crc32(0L, Z_NULL, 0);
    for (int i = 0; i < 2; i++) {
        const size_t n = (size_t)sets[i]->n * sets[i]->h * sets[i]->w;
        for (size_t off = 0; off < n; off += 1u << 30) /* uInt-sized pieces */
            crc = crc32(crc, sets[i]->images + off,
                        (uInt)(n - off < (1u << 30) ? n - off : 1u << 30));
        crc = crc32(crc, sets[i]->labels, (uInt)sets[i]->n);
    }
    c->data_crc = crc & 0xffffffffUL;
    for (int i = 0; i < c->n_e; i++) entry_key(c, &c->e[i]);
    return c->rank == 0 && load_state(c) ? 1 : -1;
}

/* -1 when a spec file is ready to train, else the exit status. */
static int compare_main(struct compare *c, int n, char **inputs) {
    if (cnn_dataset_load_dir(c->data, "test", &c->test) != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        return 1;
    }
    if (!cli_is_model_file(inputs[0])) {
        if (n > 1) {
            cli_err("compare: one SPECFILE, or model files only ('%s' is not a model)", inputs[0]);
            return 2;
        }
        return compare_specs(c, inputs[0]);
    }
    if (c->distributed) {
        cli_err("compare --distributed: for a SPECFILE; trained models are measured by one "
                "process");
        return 2;
    }
    c->from_models = 1;
    for (int i = 0; i < n; i++) {
        if (c->n_e == MAX_ENTRIES) {
            cli_err("compare: at most %d models", MAX_ENTRIES);
            return 2;
        }
        if (model_entry(c, inputs[i])) return 1;
    }
    const int status = write_page(c, 1);
    if (status == 0 && c->out)
        fprintf(c->say, "compare: %d models; page written to %s\n", n, c->out);
    return status;
}

int cmd_compare(int argc, char **argv) {
    struct compare *c = calloc(1, sizeof *c);
    if (!c) {
        cli_err("out of memory");
        return 1;
    }
    /* --distributed is looked for before parsing, since parsing is each rank's */
    c->ranks = 1;
    c->say = stdout;
    const int joined = cli_dist_join(argc, argv, &c->rank, &c->ranks);
    c->distributed = joined > 0;
    int status = joined < 0 ? 2 : parse_args(argc, argv, c);
    if (status < 0) status = compare_main(c, argc - optind, argv + optind);
    const int distributed = c->distributed;
    if (distributed) status = cli_dist_start(status); /* every rank ready, or none goes on */
    if (status < 0) status = sweep(c);
    free(c->runs);
    cnn_dataset_free(&c->train);
    cnn_dataset_free(&c->test);
    free(c);
    return distributed ? cli_dist_end(status) : status;
}
