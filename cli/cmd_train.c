/*
 * cmd_train.c - `mnist train`: options -> struct cnn_train_cfg, progress display, JSON log,
 * Ctrl-C handling. The loop itself is the library's (src/train.c). With --distributed, every
 * rank of an MPI job runs this (dist.h): all train, rank 0 alone prints, logs and saves.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cli.h"
#include "dist.h"

static volatile sig_atomic_t stop_flag = 0; /* the signal that asked to stop, or 0 */
/* --distributed: the largest stop_flag of any rank at the last sum, the same on all ranks */
static volatile sig_atomic_t agreed_stop = 0;

/* Ctrl-C, and SIGTERM (what kill, systemd and Slurm send): stop after the current batch and
 * save a checkpoint. A second one ends the program at once. */
static void on_stop_signal(int sig) {
    stop_flag = sig;
    signal(sig, SIG_DFL);
}

static void usage(FILE *f) {
    fputs("usage: mnist train [--preset NAME | --arch SPEC] [OPTIONS]\n"
          "       mnist train --resume CHECKPOINT [--out FILE] [--checkpoint FILE] [--data DIR]\n"
          "                   [--threads N] [--log FILE] [--report FILE] [--quiet]\n"
          "Without --preset, the network is the default preset's but the recipe is the plain\n"
          "defaults below (10 epochs of Adam at a constant 0.001, no augmentation), not that\n"
          "preset's; --preset default trains as its line below says.\n"
          "\n"
          "model and data:\n"
          "  --preset NAME          fast | default | best (see below); later flags override it\n"
          "  --arch SPEC            network spec, e.g. \"conv 32 3 pad=1, bn, relu, maxpool 2, "
          "dense 10\"\n"
          "                         (default: the default preset's network)\n"
          "  --data DIR             IDX files of any image size (default data/mnist)\n"
          "  --val N                training images held out for validation (default 5000)\n"
          "  --limit N              train on the first N images only (default: all)\n"
          "optimisation:\n"
          "  --epochs N             (default 10)\n"
          "  --batch N              (default 128)\n"
          "  --seed N               (default 1)\n"
          "  --optimizer NAME       sgd | adam | adamw (default adam)\n"
          "  --lr X                 (peak) learning rate (default 0.001)\n"
          "  --momentum X           SGD momentum (default 0.9)\n"
          "  --nesterov             SGD with Nesterov momentum (default off)\n"
          "  --schedule NAME        constant | step | cosine | onecycle (default constant)\n"
          "  --step-epochs N        step schedule: lr *= gamma every N epochs (default 1)\n"
          "  --gamma X              (default 0.1)\n"
          "  --warmup X             onecycle warm-up fraction (default 0.2)\n"
          "  --min-lr X             cosine/onecycle floor, at most --lr (default 0)\n"
          "  --weight-decay X       (default 0; not applied to biases and batch norm unless\n"
          "                         --decay-all)\n"
          "  --label-smoothing X    (default 0)\n"
          "  --ema X                validate and save an exponential moving average of the\n"
          "                         weights, updated each step with decay X, e.g. 0.999\n"
          "                         (default 0: none); training goes on from the weights\n"
          "  --augment NAME         none | affine | elastic | flip (default none). affine:\n"
          "                         shifts, turns, scaling, shear; elastic: and distortion;\n"
          "                         flip: a mirror image half of the time. On Fashion-MNIST a\n"
          "                         preset has its own recipe: default trains 16 epochs without\n"
          "                         augmentation, best flips (clothes keep their class in a\n"
          "                         mirror; digits do not); --augment and --epochs override it\n"
          "output:\n"
          "  --out FILE             best model by validation accuracy (default mnist.model)\n"
          "  --checkpoint FILE      written after every epoch (default OUT.ckpt)\n"
          "  --resume FILE          continue a checkpoint; ends with the same weights as an\n"
          "                         uninterrupted run (same seed and --threads). Checkpoints go\n"
          "                         on to FILE; the model to --out, else to FILE less\n"
          "                         '.ckpt' (or FILE.model when it has no such ending). The\n"
          "                         recipe comes from FILE: its flags are refused here\n"
          "  --log FILE             one JSON object per epoch (default: none)\n"
          "  --report FILE          at the end, the HTML page of `mnist report` on the best\n"
          "                         model and the validation images (curves from --log)\n"
          "  --threads N            (default: all cores)\n"
          "  --quiet                no progress bar\n"
          "distributed (mpirun -np P mnist train --distributed ...; needs make MPI=1):\n"
          "  --distributed          data parallel over the job's P ranks: each batch of --batch\n"
          "                         images is shared out and the gradients summed; rank 0\n"
          "                         writes the model, checkpoints and log. --threads is per rank\n"
          "  --dist-timeout S       end the job when ranks wait for each other more than S\n"
          "                         seconds: one died or hangs (default 120)\n"
          "\npresets:\n",
          f);
    cli_preset_list(f);
}

struct saver;
struct progress {
    int tty, quiet;
    double last;
    FILE *log;
    const char *log_path;
    int log_failed;            /* a write to the log failed: said once, exit 1 at the end */
    const struct saver *saver; /* where on_best and on_checkpoint write */
};

static void on_batch(const struct cnn_batch_stats *s, void *user) {
    struct progress *p = user;
    if (!p->tty || p->quiet) return;
    const double t = cli_now();
    if (t - p->last < 0.1 && s->batch != s->batches) return;
    p->last = t;
    char bar[21];
    const int fill = (int)(20.0 * s->batch / s->batches);
    for (int i = 0; i < 20; i++) bar[i] = i < fill ? '#' : '.';
    bar[20] = '\0';
    const int eta = (int)(s->eta_s + 0.5);
    fprintf(stderr, "\r\033[Kepoch %d/%d [%s] %d/%d loss %.4f acc %.2f%% %.0f img/s ETA %d:%02d",
            s->epoch, s->epochs, bar, s->batch, s->batches, s->loss, 100.0 * s->acc,
            s->images_per_s, eta / 60, eta % 60);
}

static void on_epoch(const struct cnn_epoch_stats *s, void *user) {
    struct progress *p = user;
    if (p->tty && !p->quiet) fprintf(stderr, "\r\033[K");
    printf("epoch %d/%d  train loss %.4f acc %.2f%%", s->epoch, s->epochs, s->train_loss,
           100.0 * s->train_acc);
    if (s->val_acc >= 0)
        printf("  val loss %.4f acc %.2f%%", s->val_loss, 100.0 * s->val_acc);
    printf("  lr %.2e  %.1f s  %.0f img/s%s\n", s->lr, s->seconds, s->images_per_s,
           s->improved ? "  (best, saved)" : "");
    fflush(stdout);
    if (p->log) {
        fprintf(p->log,
                "{\"epoch\":%d,\"epochs\":%d,\"train_loss\":%.6f,\"train_acc\":%.6f,"
                "\"val_loss\":%.6f,\"val_acc\":%.6f,\"lr\":%.6g,\"seconds\":%.3f,"
                "\"images_per_s\":%.1f,\"best\":%s}\n",
                s->epoch, s->epochs, s->train_loss, s->train_acc, s->val_loss, s->val_acc, s->lr,
                s->seconds, s->images_per_s, s->improved ? "true" : "false");
        /* a full disk (--log /dev/full) must not pass silently; training goes on, since the
         * model and its checkpoints matter more than the log, and the exit status says so */
        if ((fflush(p->log) != 0 || ferror(p->log)) && !p->log_failed) {
            p->log_failed = 1;
            cli_err("--log: %s: write failed: %s; training goes on without it", p->log_path,
                    strerror(errno));
        }
    }
}

/* The option tables are kept packed, a flag beside its code. */
/* clang-format off */
enum {
    O_PRESET = 256, O_ARCH, O_EPOCHS, O_BATCH, O_OPT, O_LR, O_MOM, O_NEST, O_SCHED, O_STEPE,
    O_GAMMA, O_WARM, O_MINLR, O_WD, O_DECAYALL, O_LS, O_EMA, O_AUG, O_SEED, O_THREADS, O_VAL,
    O_DATA, O_OUT, O_CKPT, O_RESUME, O_LOG, O_LIMIT, O_QUIET, O_HELP, O_DIST, O_DIST_TIMEOUT,
    O_REPORT
};

static const struct option opts[] = {
    {"preset", required_argument, 0, O_PRESET}, {"arch", required_argument, 0, O_ARCH},
    {"epochs", required_argument, 0, O_EPOCHS}, {"batch", required_argument, 0, O_BATCH},
    {"optimizer", required_argument, 0, O_OPT}, {"lr", required_argument, 0, O_LR},
    {"momentum", required_argument, 0, O_MOM},  {"nesterov", no_argument, 0, O_NEST},
    {"schedule", required_argument, 0, O_SCHED}, {"step-epochs", required_argument, 0, O_STEPE},
    {"gamma", required_argument, 0, O_GAMMA},   {"warmup", required_argument, 0, O_WARM},
    {"min-lr", required_argument, 0, O_MINLR},  {"weight-decay", required_argument, 0, O_WD},
    {"decay-all", no_argument, 0, O_DECAYALL},  {"label-smoothing", required_argument, 0, O_LS},
    {"ema", required_argument, 0, O_EMA},       {"augment", required_argument, 0, O_AUG},
    {"seed", required_argument, 0, O_SEED},     {"threads", required_argument, 0, O_THREADS},
    {"val", required_argument, 0, O_VAL},       {"data", required_argument, 0, O_DATA},
    {"out", required_argument, 0, O_OUT},       {"checkpoint", required_argument, 0, O_CKPT},
    {"resume", required_argument, 0, O_RESUME}, {"log", required_argument, 0, O_LOG},
    {"limit", required_argument, 0, O_LIMIT},   {"quiet", no_argument, 0, O_QUIET},
    {"help", no_argument, 0, O_HELP},           {"distributed", no_argument, 0, O_DIST},
    {"dist-timeout", required_argument, 0, O_DIST_TIMEOUT},
    {"report", required_argument, 0, O_REPORT}, {0, 0, 0, 0}};
/* clang-format on */

static int pick(const char *flag, const char *v, const char *const *names, int n, int *out) {
    for (int i = 0; i < n; i++)
        if (!strcmp(v, names[i])) {
            *out = i;
            return 0;
        }
    cli_err("%s: unknown value '%s'", flag, v);
    return -1;
}

static int set_path(char *dst, size_t n, const char *flag, const char *v) {
    if (strlen(v) >= n || !*v) {
        cli_err("%s: path empty or longer than %zu characters", flag, n - 1);
        return -1;
    }
    strcpy(dst, v);
    return 0;
}

/* Everything the command line says. */
struct train_args {
    struct cnn_train_cfg cfg;
    const char *arch, *data_dir, *resume, *log_path, *report_path;
    char out[512], ckpt[512];
    int quiet, out_given, ckpt_given, augment_given, epochs_given;
    const struct cli_preset *preset; /* NULL without --preset */
    float momentum; /* < 0: the optimizer's default */
    int distributed, rank, ranks; /* --distributed: this rank of how many (else 0 of 1) */
    float dist_timeout; /* 0 until given */
};

static void apply_preset(struct train_args *a, const struct cli_preset *p) {
    a->preset = p;
    a->arch = p->spec;
    a->cfg.epochs = p->epochs;
    a->cfg.batch = p->batch;
    cnn_optim_cfg_default(&a->cfg.optim, p->optimizer);
    a->cfg.optim.weight_decay = p->weight_decay;
    a->cfg.optim.nesterov = p->nesterov;
    a->cfg.sched.kind = p->schedule;
    a->cfg.sched.lr = p->lr;
    a->cfg.augment = p->augment;
    a->cfg.label_smoothing = p->label_smoothing;
    a->cfg.ema = p->ema;
}

/* Pass 1: --help, --resume and the preset, which the other flags override. Returns -1 to go
 * on, else the exit status. */
static int first_pass(int argc, char **argv, struct train_args *a) {
    int ch;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (ch == O_HELP || ch == 'h') {
            usage(stdout);
            return 0;
        }
        if (ch == O_RESUME) a->resume = optarg;
        if (ch != O_PRESET) continue;
        const struct cli_preset *p = cli_preset_find(optarg);
        if (!p) {
            cli_err("--preset: unknown preset '%s'; choose one of:", optarg);
            cli_preset_list(stderr);
            return 2;
        }
        apply_preset(a, p);
    }
    return -1;
}

/* One option of pass 2; non-zero when its value is bad (the message is printed). */
static int take_option(struct train_args *a, int ch, const char *v) {
    static const char *const optim_names[] = {"sgd", "adam", "adamw"};
    static const char *const sched_names[] = {"constant", "step", "cosine", "onecycle"};
    struct cnn_train_cfg *c = &a->cfg;
    unsigned long long u;
    int kind;
    switch (ch) {
    case O_PRESET: case O_RESUME: case O_HELP: case 'h': return 0;
    case O_ARCH: a->arch = v; return 0;
    case O_EPOCHS:
        a->epochs_given = 1;
        return cli_int("--epochs", v, 1, 100000, &c->epochs);
    case O_BATCH: return cli_int("--batch", v, 1, 65536, &c->batch);
    case O_OPT:
        if (pick("--optimizer", v, optim_names, 3, &kind)) return -1;
        const float wd = c->optim.weight_decay;
        cnn_optim_cfg_default(&c->optim, kind);
        c->optim.weight_decay = wd;
        return 0;
    case O_LR: return cli_float("--lr", v, 1e-8, 10, &c->sched.lr);
    case O_MOM: return cli_float("--momentum", v, 0, 0.999, &a->momentum);
    case O_NEST: c->optim.nesterov = 1; return 0;
    case O_SCHED: return pick("--schedule", v, sched_names, 4, &c->sched.kind);
    case O_STEPE: return cli_float("--step-epochs", v, 0.01, 1e5, &c->sched.step_epochs);
    case O_GAMMA: return cli_float("--gamma", v, 0, 1, &c->sched.gamma);
    case O_WARM: return cli_float("--warmup", v, 0, 0.99, &c->sched.warmup);
    case O_MINLR: return cli_float("--min-lr", v, 0, 10, &c->sched.min_lr);
    case O_WD: return cli_float("--weight-decay", v, 0, 1, &c->optim.weight_decay);
    case O_DECAYALL: c->optim.decay_all = 1; return 0;
    case O_LS: return cli_float("--label-smoothing", v, 0, 0.99, &c->label_smoothing);
    case O_EMA:
        return cli_float("--ema", v, 0, 0.999999, &c->ema);
    case O_AUG:
        a->augment_given = 1;
        return pick("--augment", v, cli_augment_names, CNN_AUG_LEVELS, &c->augment);
    case O_SEED:
        if (cli_u64("--seed", v, &u)) return -1;
        c->seed = u;
        return 0;
    case O_THREADS: return cli_int("--threads", v, 0, 1024, &c->threads);
    case O_VAL: return cli_int("--val", v, 0, 100000000, &c->val);
    case O_LIMIT: return cli_int("--limit", v, 1, 100000000, &c->limit);
    case O_DATA: a->data_dir = v; return 0;
    case O_OUT: a->out_given = 1; return set_path(a->out, sizeof a->out, "--out", v);
    case O_CKPT: a->ckpt_given = 1; return set_path(a->ckpt, sizeof a->ckpt, "--checkpoint", v);
    case O_LOG: a->log_path = v; return 0;
    case O_REPORT: a->report_path = v; return 0;
    case O_QUIET: a->quiet = 1; return 0;
    case O_DIST: a->distributed = 1; return 0;
    case O_DIST_TIMEOUT: return cli_float("--dist-timeout", v, 1, 1e6, &a->dist_timeout);
    default: return -1;
    }
}

/* Whether a flag sets part of the run's recipe (network, optimisation, data split), which a
 * resumed run takes from its checkpoint: giving one with --resume is refused rather than
 * ignored. Where the run writes, where its data is, and how many threads, may change. */
static int changes_recipe(int ch) {
    switch (ch) {
    case O_THREADS: case O_DATA: case O_OUT: case O_CKPT: case O_RESUME: case O_LOG:
    case O_QUIET: case O_HELP: case 'h': case O_DIST: case O_DIST_TIMEOUT: case O_REPORT:
        return 0;
    default: return 1;
    }
}

/* Both passes. Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct train_args *a) {
    cnn_train_cfg_default(&a->cfg);
    a->data_dir = "data/mnist";
    a->momentum = -1.0f;
    int ch, bad = 0, rc = first_pass(argc, argv, a);
    if (rc >= 0) return rc;
    optind = 1;
    int at = -1;
    while ((ch = getopt_long(argc, argv, ":h", opts, &at)) != -1) {
        if (ch == '?' || ch == ':') {
            cli_bad_option(argc, argv, ch);
            cli_usage_hint("train");
            return 2;
        }
        if (a->resume && changes_recipe(ch)) {
            cli_err("train --resume: --%s cannot change on resume: the checkpoint holds the "
                    "run's recipe (a resume takes --out, --checkpoint, --data, --threads, --log, "
                    "--quiet, --distributed, --dist-timeout)",
                    at >= 0 ? opts[at].name : "?");
            return 2;
        }
        at = -1;
        bad |= take_option(a, ch, optarg) != 0;
    }
    if (bad) return 2;
    if (optind < argc) {
        cli_err("train: unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (!a->resume && a->cfg.limit > 0 && a->cfg.val >= a->cfg.limit) {
        cli_err("train: --val %d leaves no training images of --limit %d", a->cfg.val,
                a->cfg.limit);
        return 2;
    }
    if ((a->cfg.sched.kind == CNN_SCHED_COSINE || a->cfg.sched.kind == CNN_SCHED_ONECYCLE) &&
        a->cfg.sched.min_lr > a->cfg.sched.lr) {
        /* the floor above the peak would make the rate climb towards the floor */
        cli_err("train: --min-lr %g is above --lr %g: the schedule would raise the rate",
                (double)a->cfg.sched.min_lr, (double)a->cfg.sched.lr);
        return 2;
    }
    if (a->momentum >= 0) a->cfg.optim.momentum = a->momentum;
    if (a->dist_timeout > 0 && !a->distributed) {
        cli_err("train: --dist-timeout is for --distributed runs");
        return 2;
    }
    if (a->dist_timeout == 0) a->dist_timeout = 120.0f;
    return -1;
}

/* The training set by its content, never by its path: crc32 of the whole training file's
 * images and of its labels, as the trainer's data fingerprint prints them, for the two sets
 * scripts/fetch-data installs (their SHA-256 sums are checked there). Anything else is
 * "custom". Fashion-MNIST's class names are recorded with it. */
static const char *dataset_name(const struct cnn_dataset *ds) {
    uLong ci = crc32(0L, Z_NULL, 0), cl = ci;
    const size_t total = (size_t)ds->n * ds->h * ds->w;
    for (size_t off = 0; off < total;) { /* uInt-sized pieces */
        const size_t piece = total - off < (1u << 30) ? total - off : (1u << 30);
        ci = crc32(ci, ds->images + off, (uInt)piece);
        off += piece;
    }
    cl = crc32(cl, ds->labels, (uInt)ds->n);
    ci &= 0xffffffffUL;
    cl &= 0xffffffffUL;
    if (ci == 0xf3639b56UL && cl == 0xba07e8efUL) return "mnist";
    if (ci == 0xae65dccdUL && cl == 0x2ed6e46aUL) return "fashion-mnist";
    return "custom";
}

/* Fashion-MNIST's class names, recorded in the model when trained on it. */
static const char *const fashion_names[] = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                            "Coat",        "Sandal",  "Shirt",    "Sneaker",
                                            "Bag",         "Ankle boot"};

/* A new model and trainer from the flags, its input the size of the data's images. Returns -1
 * on success, else the exit status. */
static int setup_fresh(struct train_args *a, const struct cnn_dataset *ds, struct cnn_model **m,
                       struct cnn_trainer **tr) {
    char from[48] = "--arch"; /* where the network comes from, for its errors */
    if (!a->arch) {
        strcpy(from, "the default network");
        a->arch = cli_preset_find("default")->spec;
    } else if (a->preset && a->arch == a->preset->spec) {
        snprintf(from, sizeof from, "--preset %s", a->preset->name);
    }
    if (!a->out_given) strcpy(a->out, "mnist.model");
    if (!a->ckpt_given) snprintf(a->ckpt, sizeof a->ckpt, "%.500s.ckpt", a->out);
    if (cli_model_for_size(a->arch, ds->h, ds->w, from, a->data_dir, m) != CNN_OK) return 2;
    struct cnn_rng rng;
    cnn_rng_seed(&rng, a->cfg.seed);
    cnn_model_init_params(*m, &rng);
    if (cnn_trainer_new(*m, &a->cfg, tr) != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        return 2;
    }
    return -1;
}

/* The checkpoint's model and trainer. Checkpoints go on to the file resumed; the model goes
 * to --out, else beside it: that file less a ".ckpt" suffix, or with ".model" appended (never
 * a fixed name in the working directory, which could be another run's model). Nothing in the
 * file names a path. */
static int setup_resume(struct train_args *a, struct cnn_model **m, struct cnn_trainer **tr) {
    if (cnn_trainer_resume(a->resume, a->cfg.threads, m, tr) != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        return 1;
    }
    if (!a->ckpt_given && set_path(a->ckpt, sizeof a->ckpt, "--resume", a->resume)) return 2;
    if (!a->out_given) {
        const size_t n = strlen(a->resume);
        const int strip = n > 5 && !strcmp(a->resume + n - 5, ".ckpt");
        const int len = strip ? snprintf(a->out, sizeof a->out, "%.*s", (int)(n - 5), a->resume)
                              : snprintf(a->out, sizeof a->out, "%s.model", a->resume);
        if (len < 0 || (size_t)len >= sizeof a->out) {
            cli_err("--resume: %s: path too long to name the model beside it; give --out",
                    a->resume);
            return 2;
        }
    }
    const int threads = a->cfg.threads;
    cnn_trainer_cfg(*tr, &a->cfg);
    a->cfg.threads = threads;
    if (a->rank == 0)
        fprintf(stderr, "mnist: resuming %s after epoch %d of %d; model to %s\n", a->resume,
                cnn_trainer_epochs_done(*tr), a->cfg.epochs, a->out);
    return -1;
}

/* --distributed: the trainer becomes this rank's share of the job. */
static int setup_dist(struct train_args *a, struct cnn_trainer *tr) {
    if (cli_dist_attach(tr, a->dist_timeout, &stop_flag, &agreed_stop) != CNN_OK) {
        cli_err("train --distributed: %s", cnn_errmsg());
        return 2;
    }
    return -1;
}

/* Where the hooks save: rank 0 alone, in a distributed run. */
struct saver {
    const char *out, *ckpt;
    int rank, distributed;
    const struct cnn_model *m;
};

static int save_best(const struct cnn_model *m, void *user) {
    const struct saver *s = ((struct progress *)user)->saver;
    return s->rank == 0 ? cnn_model_save(m, s->out) : CNN_OK;
}

/* After every epoch, and when stopped: in a distributed run first a check that every rank
 * trained on the same data and still holds the same weights (else they would go on silently:
 * other data on a node still gives every rank the same summed gradients). */
static int save_checkpoint(const struct cnn_trainer *t, void *user) {
    const struct saver *s = ((struct progress *)user)->saver;
    if (s->distributed) {
        const char *fp = cnn_model_meta(s->m, "data_fingerprint");
        const unsigned long data = crc32(0L, (const Bytef *)(fp ? fp : ""), fp ? strlen(fp) : 0);
        int same = cli_dist_same(data);
        if (same == 0 && s->rank == 0)
            cli_err("train --distributed: the ranks' training data differ (fingerprint %s on "
                    "rank 0); give every rank the same --data", fp ? fp : "none");
        else if (same == 1 && !(same = cli_dist_same(cli_model_fingerprint(s->m))) &&
                 s->rank == 0)
            cli_err("train --distributed: the ranks' weights differ after step %ld; stopping",
                    cnn_trainer_steps_done(t));
        if (same != 1) return cli_dist_end(1); /* ends every rank */
    }
    return s->ckpt[0] && s->rank == 0 ? cnn_trainer_save(t, s->ckpt) : CNN_OK;
}

/* Whether path names (through any link or other spelling) one of the IDX files in dir, which
 * an output must never replace. */
static int data_file_at(const char *dir, const char *path) {
    static const char *const names[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    struct stat out, d;
    if (stat(path, &out) != 0) return 0;
    for (int i = 0; i < 8; i++) {
        char f[4200];
        snprintf(f, sizeof f, "%s/%s%s", dir, names[i / 2], i % 2 ? ".gz" : "");
        if (stat(f, &d) == 0 && d.st_dev == out.st_dev && d.st_ino == out.st_ino) return 1;
    }
    return 0;
}

/* The run's end as the user sees it; returns the exit status. sig: the signal that stopped
 * it (as every rank agreed, in a distributed run). */
/* " FLAG VALUE" as shell words: VALUE as it is when it holds only safe characters, else in
 * single quotes (a quote inside as '\''). */
static void put_option(FILE *f, const char *flag, const char *v) {
    fprintf(f, " %s ", flag);
    if (*v && strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                        "-_./:=+,@%") == strlen(v)) {
        fputs(v, f);
        return;
    }
    fputc('\'', f);
    for (; *v; v++) {
        if (*v == '\'') fputs("'\\''", f);
        else fputc(*v, f);
    }
    fputc('\'', f);
}

/* The command that goes on with this run as it was: the checkpoint, and the model, data,
 * thread count, log and report wherever the resume's defaults would differ (the same thread
 * count is what gives the same weights). */
static void print_resume_hint(const struct train_args *a) {
    fprintf(stderr, "mnist: resume with: %smnist train%s", a->distributed ? "mpirun -np P " : "",
            a->distributed ? " --distributed" : "");
    put_option(stderr, "--resume", a->ckpt);
    const size_t n = strlen(a->ckpt);
    const int beside = n > 5 && !strcmp(a->ckpt + n - 5, ".ckpt")
                           ? strlen(a->out) == n - 5 && !strncmp(a->out, a->ckpt, n - 5)
                           : strlen(a->out) == n + 6 && !strncmp(a->out, a->ckpt, n) &&
                                 !strcmp(a->out + n, ".model");
    if (!beside) put_option(stderr, "--out", a->out);
    if (strcmp(a->data_dir, "data/mnist")) put_option(stderr, "--data", a->data_dir);
    char threads[16];
    snprintf(threads, sizeof threads, "%d", a->cfg.threads ? a->cfg.threads : cnn_default_threads());
    put_option(stderr, "--threads", threads);
    if (a->log_path) put_option(stderr, "--log", a->log_path);
    if (a->report_path) put_option(stderr, "--report", a->report_path);
    fputc('\n', stderr);
}

static int report(int rc, const struct train_args *a, const struct cnn_trainer *tr, int sig) {
    const int status = 128 + (sig == SIGTERM ? SIGTERM : SIGINT); /* as the shell reports it */
    if (rc == CNN_ERR_INTERRUPTED && a->rank != 0) return status;
    if (rc == CNN_ERR_INTERRUPTED) {
        cli_err("%s by %s; checkpoint saved to %s", cnn_errmsg(),
                sig == SIGTERM ? "SIGTERM" : "SIGINT", a->ckpt);
        print_resume_hint(a);
        return status;
    }
    if (rc == CNN_ERR_NAN) {
        cli_err("%s (--lr)", cnn_errmsg());
        if (cnn_trainer_epochs_done(tr) > 0)
            fprintf(stderr, "mnist: the last good checkpoint (epoch %d) is %s\n",
                    cnn_trainer_epochs_done(tr), a->ckpt);
        return 1;
    }
    if (rc != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        return 1;
    }
    const double best = cnn_trainer_best_val(tr);
    if (a->rank != 0) return 0;
    if (a->resume && access(a->out, F_OK) != 0) { /* resumed a finished run: nothing saved */
        printf("nothing to train: %s had finished all its epochs (%d); no model written to %s\n",
               a->resume, cnn_trainer_epochs_done(tr), a->out);
        return 0;
    }
    if (best >= 0)
        printf("best validation accuracy %.2f%%; model saved to %s\n", 100.0 * best, a->out);
    else
        printf("model saved to %s\n", a->out);
    return 0;
}

/* A preset's recipe for Fashion-MNIST (struct cli_preset), where --augment and --epochs leave
 * it free; train says what changed. */
static void fashion_recipe(struct train_args *a, struct cnn_trainer *tr) {
    const struct cli_preset *p = a->preset;
    const int aug = a->augment_given ? a->cfg.augment : p->fashion_augment;
    const int epochs = a->epochs_given || !p->fashion_epochs ? a->cfg.epochs : p->fashion_epochs;
    char said[160] = "";
    if (aug != a->cfg.augment && cnn_trainer_set_augment(tr, aug) == CNN_OK) {
        snprintf(said, sizeof said, "augmentation %s (instead of %s)", cli_augment_names[aug],
                 cli_augment_names[a->cfg.augment]);
        a->cfg.augment = aug;
    }
    if (epochs != a->cfg.epochs && cnn_trainer_set_epochs(tr, epochs) == CNN_OK) {
        const size_t n = strlen(said);
        snprintf(said + n, sizeof said - n, "%s%d epochs (instead of %d)", n ? ", " : "", epochs,
                 a->cfg.epochs);
        a->cfg.epochs = epochs;
    }
    if (said[0] && a->rank == 0)
        fprintf(stderr,
                "mnist: fashion-mnist: the %s preset's recipe for it: %s; --augment and "
                "--epochs choose otherwise\n",
                p->name, said);
}

/* A new run's data, recognised by content: the model's dataset name and class names, and for
 * Fashion-MNIST the preset's recipe for it. */
static void name_the_data(struct train_args *a, struct cnn_model *m, struct cnn_trainer *tr,
                          const struct cnn_dataset *ds) {
    const char *name = dataset_name(ds);
    const int fashion = !strcmp(name, "fashion-mnist");
    cnn_model_set_meta(m, "dataset", name);
    for (int i = 0; fashion && i < 10; i++) {
        char key[16];
        snprintf(key, sizeof key, "class.%d", i);
        cnn_model_set_meta(m, key, fashion_names[i]);
    }
    if (fashion && a->preset) fashion_recipe(a, tr);
}

/* The saved model (the best epoch's) gets its typicality, fitted on this run's split, and is
 * saved again. A failure leaves the model as it was and is only a warning: predict then judges
 * by confidence alone. */
static void fit_typicality(const struct train_args *a, const struct cnn_trainer *tr,
                           const struct cnn_dataset *ds) {
    struct cnn_model *saved = NULL;
    int rc = cnn_model_load(a->out, &saved);
    if (!rc) rc = cnn_trainer_fit_typicality(tr, ds, saved);
    if (!rc) rc = cnn_model_save(saved, a->out);
    if (rc) cli_err("warning: %s: no typicality: %s", a->out, cnn_errmsg());
    cnn_model_free(saved);
}

/* Check the outputs against the data, open the log, run, report. */
static int run(struct train_args *a, const struct cnn_dataset *ds, struct cnn_model *m,
               struct cnn_trainer *tr) {
    if (cli_check_replaced_output("--out", a->out) ||
        (a->ckpt[0] && cli_check_replaced_output("--checkpoint", a->ckpt)) ||
        (a->log_path && cli_check_output("--log", a->log_path)) ||
        (a->report_path && cli_check_replaced_output("--report", a->report_path)))
        return 1;
    const char *outs[4] = {a->out, a->ckpt, a->log_path, a->report_path};
    for (int i = 0; i < 4; i++) {
        if (outs[i] && outs[i][0] && data_file_at(a->data_dir, outs[i])) {
            cli_err("%s: is one of the data files in %s; not overwriting it", outs[i], a->data_dir);
            return 2;
        }
    }
    const int usable = a->cfg.limit > 0 && a->cfg.limit < ds->n ? a->cfg.limit : ds->n;
    if (!a->resume && a->cfg.val >= usable) { /* a usage error, as with --limit (parse_args) */
        cli_err("train: --val %d leaves no training images of the %d in %s", a->cfg.val, usable,
                a->data_dir);
        return 2;
    }
    if (!a->resume) name_the_data(a, m, tr, ds);
    const struct saver sv = {a->out, a->ckpt, a->rank, a->distributed, m};
    struct progress prog = {isatty(STDERR_FILENO), a->quiet || a->rank != 0, 0, NULL,
                            a->log_path, 0, &sv};
    if (a->log_path && a->rank == 0 &&
        !(prog.log = cli_open_log(a->log_path, a->resume != NULL))) {
        cli_err("%s: cannot open log file: %s", a->log_path,
                errno == ENXIO ? "a FIFO with no reader" : strerror(errno));
        return 1;
    }
    char ranks[32] = "";
    if (a->distributed) snprintf(ranks, sizeof ranks, "%d ranks x ", a->ranks);
    if (a->rank == 0)
        fprintf(stderr, "mnist: %s, %s%d threads, %d epochs, batch %d, %zu parameters\n",
                cnn_model_spec(m), ranks, a->cfg.threads ? a->cfg.threads : cnn_default_threads(),
                a->cfg.epochs, a->cfg.batch, cnn_model_n_params(m));
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    volatile sig_atomic_t *stop = a->distributed ? &agreed_stop : &stop_flag;
    const struct cnn_train_hooks hooks = {sizeof hooks, on_batch,  on_epoch, save_best,
                                          save_checkpoint, &prog, stop};
    const int rc = cnn_trainer_run(tr, ds, &hooks);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (prog.tty && !a->quiet) fprintf(stderr, "\r\033[K");
    if (prog.log && fclose(prog.log) != 0 && !prog.log_failed) {
        prog.log_failed = 1;
        cli_err("--log: %s: write failed: %s", a->log_path, strerror(errno));
    }
    int status = report(rc, a, tr, *stop);
    if (status == 0 && rc == CNN_OK && a->rank == 0 && access(a->out, F_OK) == 0)
        fit_typicality(a, tr, ds);
    /* --report: the page of `mnist report --split val`, on the images this run held out */
    if (status == 0 && a->report_path && a->rank == 0 &&
        cli_report_train(a->out, ds, a->data_dir, a->log_path, a->report_path, a->cfg.threads))
        status = 1;
    return status == 0 && prog.log_failed ? 1 : status;
}

/* --distributed (looked for before parsing, since parsing is each rank's): join the job. The
 * ranks other than 0 print no results, and keep their messages aside until all have started
 * (cli_dist_start). Returns -1 to go on, else the exit status. */
static int join_job(int argc, char **argv, struct train_args *a) {
    a->ranks = 1;
    const int joined = cli_dist_join(argc, argv, &a->rank, &a->ranks);
    if (joined < 0) return 2; /* not in a job: nothing to agree or leave */
    a->distributed = joined;
    if (joined && a->rank != 0) {
        fflush(NULL);
        if (!freopen("/dev/null", "w", stdout)) return 1;
    }
    return -1;
}

int cmd_train(int argc, char **argv) {
    struct train_args a;
    memset(&a, 0, sizeof a);
    int status = join_job(argc, argv, &a);
    if (status < 0) status = parse_args(argc, argv, &a);
    struct cnn_dataset ds = {0};
    if (status < 0 && cnn_dataset_load_dir(a.data_dir, "train", &ds) != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        status = 1;
    }
    struct cnn_model *m = NULL;
    struct cnn_trainer *tr = NULL;
    if (status < 0) status = a.resume ? setup_resume(&a, &m, &tr) : setup_fresh(&a, &ds, &m, &tr);
    if (status < 0 && a.distributed) status = setup_dist(&a, tr);
    if (a.distributed) status = cli_dist_start(status);
    if (status < 0) status = run(&a, &ds, m, tr);
    cnn_trainer_free(tr);
    cnn_model_free(m);
    cnn_dataset_free(&ds);
    return a.distributed ? cli_dist_end(status) : status;
}
