/*
 * cmd_train.c - `mnist train`: options -> struct cnn_train_cfg, progress display, JSON log,
 * Ctrl-C handling. The loop itself is the library's (src/train.c).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static volatile sig_atomic_t stop_flag = 0;

static void on_sigint(int sig) {
    (void)sig;
    stop_flag = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C ends the program at once */
}

static void usage(FILE *f) {
    fputs("usage: mnist train [--preset NAME | --arch SPEC] [OPTIONS]\n"
          "       mnist train --resume CHECKPOINT [--data DIR] [--threads N] [--log FILE]\n"
          "\n"
          "model and data:\n"
          "  --preset NAME          fast | default | best (see below); later flags override it\n"
          "  --arch SPEC            network spec, e.g. \"conv 32 3 pad=1, bn, relu, maxpool 2, "
          "dense 10\"\n"
          "  --data DIR             IDX files (default data/mnist)\n"
          "  --val N                training images held out for validation (default 5000)\n"
          "  --limit N              train on the first N images only\n"
          "optimisation:\n"
          "  --epochs N  --batch N  --seed N\n"
          "  --optimizer NAME       sgd | adam | adamw (default adam)\n"
          "  --lr X                 (peak) learning rate (default 0.001)\n"
          "  --momentum X           SGD momentum (default 0.9)   --nesterov\n"
          "  --schedule NAME        constant | step | cosine | onecycle\n"
          "  --step-epochs N --gamma X   step schedule: lr *= gamma every N epochs\n"
          "  --warmup X             onecycle warm-up fraction (default 0.2)   --min-lr X\n"
          "  --weight-decay X       (not applied to biases and batch norm unless --decay-all)\n"
          "  --label-smoothing X    --augment none|affine|elastic\n"
          "output:\n"
          "  --out FILE             best model by validation accuracy (default mnist.model)\n"
          "  --checkpoint FILE      written after every epoch (default OUT.ckpt)\n"
          "  --resume FILE          continue a checkpoint; ends with the same weights as an\n"
          "                         uninterrupted run (same seed and --threads)\n"
          "  --log FILE             one JSON object per epoch\n"
          "  --threads N            default: all cores\n"
          "  --quiet                no progress bar\n"
          "\npresets:\n",
          f);
    cli_preset_list(f);
}

struct progress {
    int tty, quiet;
    double last;
    FILE *log;
};

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void on_batch(const struct cnn_batch_stats *s, void *user) {
    struct progress *p = user;
    if (!p->tty || p->quiet) return;
    const double t = mono();
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
        fflush(p->log);
    }
}

enum {
    O_PRESET = 256, O_ARCH, O_EPOCHS, O_BATCH, O_OPT, O_LR, O_MOM, O_NEST, O_SCHED, O_STEPE,
    O_GAMMA, O_WARM, O_MINLR, O_WD, O_DECAYALL, O_LS, O_AUG, O_SEED, O_THREADS, O_VAL, O_DATA,
    O_OUT, O_CKPT, O_RESUME, O_LOG, O_LIMIT, O_QUIET, O_HELP
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
    {"augment", required_argument, 0, O_AUG},   {"seed", required_argument, 0, O_SEED},
    {"threads", required_argument, 0, O_THREADS}, {"val", required_argument, 0, O_VAL},
    {"data", required_argument, 0, O_DATA},     {"out", required_argument, 0, O_OUT},
    {"checkpoint", required_argument, 0, O_CKPT}, {"resume", required_argument, 0, O_RESUME},
    {"log", required_argument, 0, O_LOG},       {"limit", required_argument, 0, O_LIMIT},
    {"quiet", no_argument, 0, O_QUIET},         {"help", no_argument, 0, O_HELP},
    {0, 0, 0, 0}};

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

int cmd_train(int argc, char **argv) {
    static const char *const optim_names[] = {"sgd", "adam", "adamw"};
    static const char *const sched_names[] = {"constant", "step", "cosine", "onecycle"};
    static const char *const aug_names[] = {"none", "affine", "elastic"};
    struct cnn_train_cfg cfg;
    cnn_train_cfg_default(&cfg);
    const char *arch = NULL, *data_dir = "data/mnist", *resume = NULL, *log_path = NULL;
    int threads = 0, quiet = 0, ch, bad = 0, ckpt_given = 0, optim_given = 0;
    float momentum = -1.0f;
    /* pass 1: the preset (and --help, --resume) */
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (ch == O_HELP) {
            usage(stdout);
            return 0;
        }
        if (ch == O_RESUME) resume = optarg;
        if (ch != O_PRESET) continue;
        const struct cli_preset *p = cli_preset_find(optarg);
        if (!p) {
            cli_err("--preset: unknown preset '%s'; choose one of:", optarg);
            cli_preset_list(stderr);
            return 2;
        }
        arch = p->spec;
        cfg.epochs = p->epochs;
        cfg.batch = p->batch;
        cnn_optim_cfg_default(&cfg.optim, p->optimizer);
        cfg.optim.weight_decay = p->weight_decay;
        cfg.optim.nesterov = p->nesterov;
        cfg.sched.kind = p->schedule;
        cfg.sched.lr = p->lr;
        cfg.augment = p->augment;
        cfg.label_smoothing = p->label_smoothing;
    }
    /* pass 2: everything else overrides */
    optind = 1;
    while ((ch = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        int kind;
        unsigned long long u;
        switch (ch) {
        case O_PRESET: case O_RESUME: case O_HELP: break;
        case O_ARCH: arch = optarg; break;
        case O_EPOCHS: bad |= cli_int("--epochs", optarg, 1, 100000, &cfg.epochs); break;
        case O_BATCH: bad |= cli_int("--batch", optarg, 1, 65536, &cfg.batch); break;
        case O_OPT:
            if (!(bad |= pick("--optimizer", optarg, optim_names, 3, &kind))) {
                const float wd = cfg.optim.weight_decay;
                cnn_optim_cfg_default(&cfg.optim, kind);
                cfg.optim.weight_decay = wd;
                optim_given = 1;
            }
            break;
        case O_LR: bad |= cli_float("--lr", optarg, 1e-8, 10, &cfg.sched.lr); break;
        case O_MOM: bad |= cli_float("--momentum", optarg, 0, 0.999, &momentum); break;
        case O_NEST: cfg.optim.nesterov = 1; break;
        case O_SCHED: bad |= pick("--schedule", optarg, sched_names, 4, &cfg.sched.kind); break;
        case O_STEPE:
            bad |= cli_float("--step-epochs", optarg, 0.01, 1e5, &cfg.sched.step_epochs);
            break;
        case O_GAMMA: bad |= cli_float("--gamma", optarg, 0, 1, &cfg.sched.gamma); break;
        case O_WARM: bad |= cli_float("--warmup", optarg, 0, 0.99, &cfg.sched.warmup); break;
        case O_MINLR: bad |= cli_float("--min-lr", optarg, 0, 10, &cfg.sched.min_lr); break;
        case O_WD: bad |= cli_float("--weight-decay", optarg, 0, 1, &cfg.optim.weight_decay); break;
        case O_DECAYALL: cfg.optim.decay_all = 1; break;
        case O_LS:
            bad |= cli_float("--label-smoothing", optarg, 0, 0.99, &cfg.label_smoothing);
            break;
        case O_AUG: bad |= pick("--augment", optarg, aug_names, 3, &cfg.augment); break;
        case O_SEED:
            if (!(bad |= cli_u64("--seed", optarg, &u))) cfg.seed = u;
            break;
        case O_THREADS: bad |= cli_int("--threads", optarg, 0, 1024, &threads); break;
        case O_VAL: bad |= cli_int("--val", optarg, 0, 100000000, &cfg.val); break;
        case O_LIMIT: bad |= cli_int("--limit", optarg, 1, 100000000, &cfg.limit); break;
        case O_DATA: data_dir = optarg; break;
        case O_OUT: bad |= set_path(cfg.out, sizeof cfg.out, "--out", optarg); break;
        case O_CKPT:
            bad |= set_path(cfg.checkpoint, sizeof cfg.checkpoint, "--checkpoint", optarg);
            ckpt_given = 1;
            break;
        case O_LOG: log_path = optarg; break;
        case O_QUIET: quiet = 1; break;
        default: cli_bad_option(argc, argv, ch); usage(stderr); return 2;
        }
    }
    if (bad) return 2;
    if (optind < argc) {
        cli_err("train: unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (!resume && cfg.limit > 0 && cfg.val >= cfg.limit) {
        cli_err("train: --val %d leaves no training images of --limit %d", cfg.val, cfg.limit);
        return 2;
    }
    if (momentum >= 0) cfg.optim.momentum = momentum;
    (void)optim_given;
    cnn_set_threads(threads);

    struct cnn_net *net = NULL;
    struct cnn_trainer *tr = NULL;
    struct cnn_dataset ds = {0};
    int rc, status = 1;
    if (resume) {
        if (cnn_trainer_resume(resume, &net, &cfg, &tr) != CNN_OK) {
            cli_err("%s", cnn_errmsg());
            return 1;
        }
        fprintf(stderr, "mnist: resuming %s after epoch %d of %d\n", resume,
                cnn_trainer_epoch(tr), cfg.epochs);
    } else {
        if (!arch) arch = cli_preset_find("default")->spec;
        if (!cfg.out[0]) strcpy(cfg.out, "mnist.model");
        if (!ckpt_given) snprintf(cfg.checkpoint, sizeof cfg.checkpoint, "%.500s.ckpt", cfg.out);
        if (strstr(data_dir, "fashion")) strcpy(cfg.dataset, "fashion-mnist");
        if (cnn_net_new(arch, 1, 28, 28, &net) != CNN_OK) {
            cli_err("--arch: %s", cnn_errmsg());
            return 2;
        }
        struct cnn_rng rng;
        cnn_rng_seed(&rng, cfg.seed);
        cnn_net_init_params(net, &rng);
        if (cnn_trainer_new(net, &cfg, &tr) != CNN_OK) {
            cli_err("%s", cnn_errmsg());
            cnn_net_free(net);
            return 2;
        }
    }
    if (cli_check_output("--out", cfg.out) ||
        (cfg.checkpoint[0] && cli_check_output("--checkpoint", cfg.checkpoint)) ||
        (log_path && cli_check_output("--log", log_path)))
        goto done;
    if (cnn_dataset_load_dir(data_dir, "train", &ds) != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        goto done;
    }
    struct progress prog = {isatty(STDERR_FILENO), quiet, 0, NULL};
    if (log_path && !(prog.log = fopen(log_path, resume ? "a" : "w"))) {
        cli_err("%s: cannot open log file: %s", log_path, strerror(errno));
        goto done;
    }
    fprintf(stderr, "mnist: %s, %d threads, %d epochs, batch %d, %zu parameters\n",
            cnn_net_spec(net), cnn_get_threads(), cfg.epochs, cfg.batch, cnn_net_n_params(net));
    signal(SIGINT, on_sigint);
    const struct cnn_train_hooks hooks = {on_batch, on_epoch, &prog, &stop_flag};
    rc = cnn_trainer_run(tr, &ds, &hooks);
    signal(SIGINT, SIG_DFL);
    if (prog.tty && !quiet) fprintf(stderr, "\r\033[K");
    if (prog.log) fclose(prog.log);
    if (rc == CNN_ERR_INTERRUPTED) {
        cli_err("%s; checkpoint saved to %s", cnn_errmsg(), cfg.checkpoint);
        fprintf(stderr, "mnist: resume with: mnist train --resume %s\n", cfg.checkpoint);
        status = 130;
    } else if (rc == CNN_ERR_NAN) {
        cli_err("%s (--lr)", cnn_errmsg());
        if (cnn_trainer_epoch(tr) > 0)
            fprintf(stderr, "mnist: the last good checkpoint (epoch %d) is %s\n",
                    cnn_trainer_epoch(tr), cfg.checkpoint);
    } else if (rc != CNN_OK) {
        cli_err("%s", cnn_errmsg());
    } else {
        const double best = cnn_trainer_best_val(tr);
        if (best >= 0)
            printf("best validation accuracy %.2f%%; model saved to %s\n", 100.0 * best, cfg.out);
        else
            printf("model saved to %s\n", cfg.out);
        status = 0;
    }
done:
    cnn_dataset_free(&ds);
    cnn_trainer_free(tr);
    cnn_net_free(net);
    return status;
}
