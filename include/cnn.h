/*
 * cnn.h - libcnn 1.0: a small convolutional neural network library for MNIST-sized images.
 *
 * What it is: layers with forward and backward passes (NCHW float32, batch-major), a readable
 * network spec, SGD/Adam(W) over one flat parameter vector, a trainer you can step, evaluation
 * metrics, strict IDX and model-file readers, and MNIST-style image preprocessing.
 * What it is not: a general autodiff framework. Networks are a plain sequence of layers.
 *
 * Model and context
 *   A struct cnn_model is what was trained: the spec, the layers, the parameters, batch-norm
 *   statistics, input normalisation and metadata. Once built or loaded it is only read, so any
 *   number of threads may share one model. A struct cnn_ctx is what one computation needs: the
 *   activation arena, workspaces and batch buffers, sized once from a model and a maximum batch,
 *   and its own thread count. A context belongs to one thread at a time. Inference takes a const
 *   model and a context and takes no lock:
 *
 *     struct cnn_model *m;
 *     struct cnn_ctx *ctx;
 *     if (cnn_model_load("mnist.model", &m) != CNN_OK ||
 *         cnn_ctx_new(m, 1, 1, &ctx) != CNN_OK) {       // batches of 1, on one thread
 *         fprintf(stderr, "%s\n", cnn_errmsg());
 *         return 1;
 *     }
 *     float probs[10];
 *     cnn_predict_u8(m, ctx, pixels, 1, probs);         // pixels: 784 bytes, 0 = background
 *     cnn_ctx_free(ctx);
 *     cnn_model_free(m);
 *
 *   A trainer (struct cnn_trainer) owns the writes to its model while it exists: steps change
 *   the parameters, and no other thread may use the model during a step or an epoch.
 *
 * Conventions
 *   - Fallible functions return CNN_OK (0) or a negative CNN_ERR_*; cnn_errmsg() then gives a
 *     one-line detail ("data/x.idx: magic 0x00000803, expected 0x00000801 (IDX u8 labels)").
 *     The library never prints, exits or aborts on bad data.
 *   - cnn_x_new()/cnn_x_load() return objects the caller owns; cnn_x_free(NULL) does nothing.
 *     A returned pointer into an object is borrowed: valid until the object changes or is freed.
 *   - Randomness comes only from a seed or a struct cnn_rng the caller passes in: same seed,
 *     same thread count, same results, bit for bit.
 *   - Threads: a context computes on the threads it was created with (0 = OpenMP's default,
 *     usually every core); nothing in the library sets a process-wide thread count. OpenBLAS is
 *     called on one thread (libcnn sets this once, on its first matrix product, because
 *     OpenBLAS's own count is process-wide); libcnn splits the work across threads itself.
 *
 * Thread safety, function by function, is given as [safe], [ctx], [model] or [once]:
 *   [safe]  any thread, any time.
 *   [ctx]   any thread, but one call at a time per context (or trainer); the model is only read.
 *   [model] changes the model: no other call may use that model at the same time.
 *   [once]  a constructor or destructor: the object is not yet, or no longer, shared.
 *
 * Versions and the soname: the shared library is libcnn.so.MAJOR.MINOR.PATCH with the soname
 * libcnn.so.MAJOR. MAJOR goes up when a program built against an older cnn.h could break: a
 * function removed or its signature or meaning changed, a public struct's layout changed other
 * than by growing a struct that carries its size, an enum value renumbered. MINOR goes up for
 * additions (new functions, new fields at the end of sized structs, new status codes a caller
 * may not know). PATCH is for fixes that change no interface. Structs that will grow carry
 * their size in their first member (cnn_train_cfg, cnn_train_hooks); model metadata is opaque
 * key/value text. The other public structs are fixed for all of 1.x.
 */
#ifndef CNN_H
#define CNN_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(CNN_STATIC_ONLY)
#define CNN_API __attribute__((visibility("default")))
#else
#define CNN_API
#endif

#define CNN_VERSION_MAJOR 1
#define CNN_VERSION_MINOR 0
#define CNN_VERSION_PATCH 0
#define CNN_VERSION_STRING "1.0.0"
/* The version of the library actually linked, "MAJOR.MINOR.PATCH" (may be newer than the
 * header's CNN_VERSION_STRING under the same MAJOR). [safe] */
CNN_API const char *cnn_version(void);

/* ---------------------------------------------------------------------------------------------
 * Status codes and error detail
 */
enum cnn_status {
    CNN_OK = 0,
    CNN_ERR_NOMEM = -1,       /* allocation failed */
    CNN_ERR_IO = -2,          /* open, read, write or rename failed */
    CNN_ERR_FORMAT = -3,      /* file contents are not what they claim to be */
    CNN_ERR_SPEC = -4,        /* the network spec cannot be parsed or its shapes do not fit */
    CNN_ERR_ARG = -5,         /* a caller-supplied argument is out of range */
    CNN_ERR_NAN = -6,         /* the training loss became NaN or Inf */
    CNN_ERR_INTERRUPTED = -7, /* training was stopped through cnn_train_hooks.stop */
    CNN_ERR_NODIGIT = -8,     /* an image holds no ink to classify */
    CNN_ERR_LIMIT = -9,       /* input larger than a safety limit */
    CNN_ERR_REDUCE = -10      /* the caller's reducer reported a failure */
};

/* The detail message of the last failing call on this thread ("" if none). Borrowed. [safe] */
CNN_API const char *cnn_errmsg(void);
/* A short fixed name for a status code, e.g. "format error". [safe] */
CNN_API const char *cnn_status_str(int status);

/* ---------------------------------------------------------------------------------------------
 * Random numbers: splitmix64, explicit state, no globals. [safe] (each rng to one thread)
 */
struct cnn_rng {
    uint64_t s;
};
CNN_API void cnn_rng_seed(struct cnn_rng *r, uint64_t seed);
CNN_API uint64_t cnn_rng_u64(struct cnn_rng *r);
CNN_API float cnn_rng_uniform(struct cnn_rng *r); /* [0, 1) */
CNN_API float cnn_rng_normal(struct cnn_rng *r);  /* mean 0, std 1 */
/* A stateless hash of (seed, i) to [0,1): lets parallel loops draw reproducible numbers. */
CNN_API float cnn_rng_hash_uniform(uint64_t seed, uint64_t i);

/* ---------------------------------------------------------------------------------------------
 * IDX files (the MNIST format): u8 images (N,H,W) and u8 labels (N). Raw or gzip, detected by
 * content. Every header field is checked against the real size. All [safe].
 */
#define CNN_IDX_MAX_DIMS 3
struct cnn_idx {
    int ndim;                   /* 1 for labels, 3 for images */
    int dims[CNN_IDX_MAX_DIMS]; /* dims[0] = number of items */
    size_t size;                /* product of dims, bytes in data */
    uint8_t *data;              /* owned */
};
/* Load an IDX file of u8 data with 1 or 3 dimensions. The name in errors is `path`. */
CNN_API int cnn_idx_load(const char *path, struct cnn_idx *out);
/* The same from memory; `name` is used in error messages. Used by the fuzzer. */
CNN_API int cnn_idx_parse(const void *buf, size_t len, const char *name, struct cnn_idx *out);
CNN_API void cnn_idx_free(struct cnn_idx *idx);

#define CNN_MAX_CLASSES 10
/* Images with labels, checked together: equal counts, labels < n_classes. */
struct cnn_dataset {
    int n, h, w;       /* n images of h x w, one channel */
    int n_classes;     /* 10 */
    uint8_t *images;   /* (n, h, w), owned */
    uint8_t *labels;   /* (n), owned */
};
CNN_API int cnn_dataset_load(const char *images_path, const char *labels_path,
                             struct cnn_dataset *out);
/* Loads DIR/{train,t10k}-{images-idx3,labels-idx1}-ubyte, with or without .gz.
 * split is "train" or "test". */
CNN_API int cnn_dataset_load_dir(const char *dir, const char *split, struct cnn_dataset *out);
CNN_API void cnn_dataset_free(struct cnn_dataset *ds);

/* ---------------------------------------------------------------------------------------------
 * Models.
 *
 * Spec: comma-separated layers, each a name, positional numbers and key=value options:
 *     conv 32 3 pad=1, bn, relu, maxpool 2, dropout 0.25, dense 128, relu, dense 10
 * The final layer's outputs are the class logits; softmax + cross-entropy is implicit.
 * See README.md for every layer and option.
 */
struct cnn_model;

/* Parse `spec`, infer shapes for inputs of (c,h,w), lay out parameters. Parameters are zero
 * until cnn_model_init_params or a load. On a bad spec returns CNN_ERR_SPEC and the message
 * names the offending layer ("layer 3 'conv 32 9': kernel 9 larger than input 7x7"). [once] */
CNN_API int cnn_model_new(const char *spec, int c, int h, int w, struct cnn_model **out);
CNN_API void cnn_model_free(struct cnn_model *m); /* [once] */
/* He/Kaiming-normal weights for relu nets, zero biases, batch norm gamma 1 beta 0. [model] */
CNN_API void cnn_model_init_params(struct cnn_model *m, struct cnn_rng *rng);

/* Read-only views, all [safe] while no [model] call runs. Pointers are borrowed. */
CNN_API const char *cnn_model_spec(const struct cnn_model *m); /* normalised spec text */
CNN_API size_t cnn_model_n_params(const struct cnn_model *m);
CNN_API size_t cnn_model_n_state(const struct cnn_model *m); /* batch-norm running statistics */
CNN_API int cnn_model_n_classes(const struct cnn_model *m);
CNN_API void cnn_model_input_shape(const struct cnn_model *m, int *c, int *h, int *w);
CNN_API const float *cnn_model_params(const struct cnn_model *m); /* n_params floats */
CNN_API const float *cnn_model_state(const struct cnn_model *m);  /* n_state floats */

/* Input normalisation applied by cnn_predict_u8 and the trainer: x = (pixel/255 - mean) / std.
 * A std that is not > 0 is taken as 1. set: [model]; get: [safe]. */
CNN_API void cnn_model_set_norm(struct cnn_model *m, float mean, float std);
CNN_API void cnn_model_get_norm(const struct cnn_model *m, float *mean, float *std);

struct cnn_layer_info {
    const char *kind;   /* "conv", "bn", ... */
    char text[64];      /* the layer as it would be written in a spec */
    int c, h, w;        /* output shape per image (h = w = 1 after dense) */
    size_t n_params;
    double mflops;      /* forward, per image */
};
CNN_API int cnn_model_n_layers(const struct cnn_model *m); /* [safe] */
/* Layer i, 0-based. CNN_ERR_ARG when i is not in [0, n_layers). [safe] */
CNN_API int cnn_model_layer_info(const struct cnn_model *m, int i, struct cnn_layer_info *out);

/* Metadata: key=value text saved with the model. Keys are 1-47 characters of [a-z0-9._-];
 * values are at most 255 printable characters, no newline. The trainer writes these keys:
 *   date, epochs, val_acc, train_images, data_fingerprint, val_fingerprint, and the recipe
 *   as recipe.optimizer, recipe.lr, recipe.schedule, recipe.epochs, recipe.batch,
 *   recipe.augment, recipe.seed, recipe.label_smoothing, recipe.weight_decay, recipe.val.
 * The caller sets dataset and the class names (class.0 ... class.N-1) if it wants them.
 * cnn_model_meta returns the value or NULL (borrowed) [safe]; set (value NULL removes the key)
 * returns CNN_ERR_ARG for a bad key or value and CNN_ERR_LIMIT past 64 keys [model]. */
#define CNN_META_MAX 64
CNN_API const char *cnn_model_meta(const struct cnn_model *m, const char *key);
CNN_API int cnn_model_set_meta(struct cnn_model *m, const char *key, const char *value);
CNN_API int cnn_model_meta_count(const struct cnn_model *m);
/* Entry i in [0, count) in the order they were first set; CNN_ERR_ARG otherwise. [safe] */
CNN_API int cnn_model_meta_at(const struct cnn_model *m, int i, const char **key,
                              const char **value);
/* The name of class i: metadata class.I if set, else the decimal number ("7"). Borrowed;
 * NULL if i is out of range. [safe] */
CNN_API const char *cnn_model_class_name(const struct cnn_model *m, int i);

/* Model files: magic, version, spec, normalisation, params, state, metadata, CRC-32.
 * Little-endian. Writes go to a temporary beside PATH and are renamed into place, so PATH is
 * always either the old file or the new one. Loading checks everything before it trusts
 * anything; files of format version 1 and 2 load. All [safe] (save only reads the model). */
CNN_API int cnn_model_save(const struct cnn_model *m, const char *path);
CNN_API int cnn_model_load(const char *path, struct cnn_model **out);
CNN_API int cnn_model_parse(const void *buf, size_t len, const char *name,
                            struct cnn_model **out);

/* Export for other runtimes. Both take raw pixels 0..255 (the model's input normalisation is
 * part of what they write) and give the class probabilities; a layer kind that cannot be
 * exported is refused with CNN_ERR_ARG naming the layer. Files are written atomically, as
 * cnn_model_save does. All [safe].
 *
 * ONNX (opset 13, IR version 7): input "pixels" float (N, 1, H, W), outputs "logits" and
 * "probs" float (N, classes), N dynamic; the spec and the metadata in metadata_props. With
 * CNN_ONNX_FOLD_BN, batch norm right after a convolution or dense layer is folded into its
 * weights; otherwise every batch norm is a BatchNormalization node. */
#define CNN_ONNX_FOLD_BN 1
CNN_API int cnn_model_export_onnx(const struct cnn_model *m, const char *path, int flags);
/* C99 source: BASE.h and BASE.c (base: a path without extension whose last part, a C
 * identifier, names everything in them), with the weights as static const arrays (batch norm
 * folded in), one function `int NAME_predict(const unsigned char pixels[H*W*C], float
 * probs[classes])` returning the class, plain loops, no allocation and no other library;
 * BASE.h states the static scratch it uses. */
CNN_API int cnn_model_export_c(const struct cnn_model *m, const char *base);

/* ---------------------------------------------------------------------------------------------
 * Contexts and inference.
 */
struct cnn_ctx;

/* A context for inference with models laid out like m (the same spec and input shape: one
 * context serves an ensemble of such models). Batches of up to max_batch images (1..65536) run
 * at once; larger calls are cut into chunks of max_batch. threads: 0 = OpenMP's default,
 * else 1..1024. With threads > 1, a batch of at least `threads` images is split between them;
 * a single image is split inside each layer. [once] */
CNN_API int cnn_ctx_new(const struct cnn_model *m, int max_batch, int threads,
                        struct cnn_ctx **out);
CNN_API void cnn_ctx_free(struct cnn_ctx *ctx); /* [once] */
CNN_API int cnn_ctx_threads(const struct cnn_ctx *ctx); /* [safe] */
/* The thread count a context made with threads = 0 gets on this thread now. [safe] */
CNN_API int cnn_default_threads(void);
CNN_API int cnn_ctx_max_batch(const struct cnn_ctx *ctx); /* [safe] */

/* Class probabilities (batch norm on running statistics, dropout off).
 * x (n, c, h, w) already normalised; probs (n, n_classes) out; n >= 0. CNN_ERR_ARG if ctx was
 * sized for another layout. [ctx] */
CNN_API int cnn_predict(const struct cnn_model *m, struct cnn_ctx *ctx, const float *x, int n,
                        float *probs);
/* The same from raw u8 pixels (n, c, h, w), applying the model's normalisation. [ctx] */
CNN_API int cnn_predict_u8(const struct cnn_model *m, struct cnn_ctx *ctx,
                           const uint8_t *pixels, int n, float *probs);
/* Test-time augmentation: the mean of the probabilities over cnn_tta_views(m) views of each
 * image: itself, shifted by one pixel in each of the four directions (0 enters at the edge),
 * and its mirror when the model was trained on mirror images (metadata recipe.augment = flip).
 * It costs that many predictions, and whether it helps depends on the data: measure it on
 * validation images. pixels (n, c, h, w) raw u8; probs (n, n_classes) out. [ctx] */
CNN_API int cnn_tta_views(const struct cnn_model *m); /* 5 or 6 [safe] */
CNN_API int cnn_predict_u8_tta(const struct cnn_model *m, struct cnn_ctx *ctx,
                               const uint8_t *pixels, int n, float *probs);
/* Typicality: how much each image looks like the model's training images, beside its
 * probabilities. A softmax is confident far from its data (a letter X reads as a 4 at 85%);
 * typicality is the fraction of the model's validation images that look less typical than
 * this one, in [0, 1]: a digit like the training digits is rarely below 0.002, a letter or a
 * scribble usually is. Models get it when trained (cnn_trainer_fit_typicality); without it
 * these return CNN_ERR_ARG. typicality (n) out. [ctx] */
CNN_API int cnn_model_has_typicality(const struct cnn_model *m); /* [safe] */
CNN_API int cnn_predict_typicality(const struct cnn_model *m, struct cnn_ctx *ctx, const float *x,
                                   int n, float *probs, float *typicality);
CNN_API int cnn_predict_u8_typicality(const struct cnn_model *m, struct cnn_ctx *ctx,
                                      const uint8_t *pixels, int n, float *probs,
                                      float *typicality);
/* Index of the largest of v[0..n) (the first on ties); 0 when n < 1. [safe] */
CNN_API int cnn_argmax(const float *v, int n);

/* ---------------------------------------------------------------------------------------------
 * Optimizers and learning-rate schedules (used through the trainer).
 */
enum cnn_optim_kind { CNN_OPT_SGD = 0, CNN_OPT_ADAM = 1, CNN_OPT_ADAMW = 2 };
struct cnn_optim_cfg {
    int kind;
    float momentum;     /* SGD; 0 = plain SGD */
    int nesterov;       /* SGD */
    float beta1, beta2, eps;
    float weight_decay; /* SGD/Adam: L2 added to the gradient; AdamW: decoupled */
    int decay_all;      /* 0: biases and batch-norm parameters are not decayed */
};
/* Fill defaults: SGD momentum 0.9, Adam betas (0.9, 0.999), eps 1e-8, no decay. [safe] */
CNN_API void cnn_optim_cfg_default(struct cnn_optim_cfg *cfg, int kind);

enum cnn_sched_kind { CNN_SCHED_CONST = 0, CNN_SCHED_STEP, CNN_SCHED_COSINE, CNN_SCHED_ONECYCLE };
struct cnn_sched {
    int kind;
    float lr;         /* base (peak for one-cycle) */
    float min_lr;     /* cosine/one-cycle floor */
    float step_epochs;/* step: multiply by gamma every step_epochs epochs */
    float gamma;
    float warmup;     /* one-cycle: fraction of all steps spent warming up */
};
/* Learning rate at `step` of `total` steps, with `per_epoch` steps per epoch. [safe] */
CNN_API float cnn_sched_lr(const struct cnn_sched *s, long step, long total, long per_epoch);

/* ---------------------------------------------------------------------------------------------
 * Data augmentation: random affine (shift, rotation, scale, shear) with bilinear sampling,
 * optionally followed by an elastic distortion (Simard et al. 2003). [safe]
 */
struct cnn_augment {
    float shift;     /* max shift in pixels */
    float rotate;    /* max rotation in degrees */
    float scale;     /* max relative scale change (0.1 = 0.9..1.1) */
    float shear;     /* max shear in degrees */
    float elastic_alpha, elastic_sigma; /* alpha 0 = no elastic distortion; sigma > 0 */
};
/* Sensible MNIST defaults: shift 2, rotate 10, scale 0.1, shear 10; elastic off or on. */
CNN_API void cnn_augment_default(struct cnn_augment *a, int elastic);
/* One image: src (h,w) u8 -> dst (h,w) float normalised as (v/255 - mean)/std.
 * CNN_ERR_ARG for sizes out of [1, 4096], a std not > 0, or an elastic sigma not > 0. */
CNN_API int cnn_augment_image(const struct cnn_augment *a, const uint8_t *src, float *dst,
                              int h, int w, float mean, float std, struct cnn_rng *rng);

/* ---------------------------------------------------------------------------------------------
 * Training: a trainer you can step.
 *
 *   cnn_trainer_step   one optimizer step on a batch you give it;
 *   cnn_trainer_epoch  the rest of the current epoch over a dataset (shuffled, augmented,
 *                      validated), then the epoch's statistics;
 *   cnn_trainer_run    epochs until cfg.epochs, with checkpoints through hooks.
 *
 * Every random choice is derived from (seed, epoch, batch), so a run resumed from a checkpoint
 * ends with the same weights, bit for bit, as one that never stopped (same seed and threads).
 * The library decides no file names: the caller saves checkpoints and models from the hooks.
 */
/* cnn_train_cfg.augment. Flip: a mirror image half of the time, for data a mirror leaves in its
 * class (clothes; never digits). */
enum cnn_augment_level {
    CNN_AUG_NONE = 0,
    CNN_AUG_AFFINE = 1,
    CNN_AUG_ELASTIC = 2, /* affine + elastic */
    CNN_AUG_FLIP = 3,
    CNN_AUG_LEVELS
};
struct cnn_train_cfg {
    size_t size;               /* sizeof(struct cnn_train_cfg); cnn_train_cfg_default sets it */
    int epochs, batch;         /* batch: 1..65536 */
    struct cnn_optim_cfg optim;
    struct cnn_sched sched;
    float label_smoothing;     /* [0, 1) */
    int augment;               /* enum cnn_augment_level */
    uint64_t seed;
    int val;                   /* images held out of the training set for validation */
    int limit;                 /* use only the first `limit` images of the data (0 = all) */
    int threads;               /* the trainer's context: 0 = OpenMP's default */
    /* [0, 1): 0, no average. Else each step updates an exponential moving average of the
     * parameters and batch-norm state, a <- d a + (1 - d) w with d = min(ema, (1 + k) /
     * (10 + k)) after step k = 0, 1, ...; validation, on_best and the model between epochs use it,
     * and training goes on from the raw weights (cnn_trainer_step puts them back). */
    float ema;
};
/* Defaults: 10 epochs, batch 128, Adam lr 1e-3 constant, val 5000, seed 1. [safe] */
CNN_API void cnn_train_cfg_default(struct cnn_train_cfg *cfg);

/* The sum of buf[0..n) over every participant (MPI ranks, say), in place, identical on all of
 * them. type is CNN_F32 (float) or CNN_F64 (double). Return 0, or non-zero to stop the
 * step with CNN_ERR_REDUCE. Batch norm calls it on its statistics in forward and backward; the
 * step calls it on the gradients before the optimizer. */
enum cnn_dtype { CNN_F32 = 0, CNN_F64 = 1 };
struct cnn_reducer {
    int (*sum)(void *buf, size_t n, int type, void *user);
    void *user;
};

struct cnn_batch_stats { /* filled by the library; may grow at the end */
    int epoch, epochs;   /* 1-based */
    int batch, batches;  /* 1-based, within the epoch */
    double loss, acc;    /* running means over the epoch so far */
    double images_per_s, eta_s, lr;
};
struct cnn_epoch_stats { /* filled by the library; may grow at the end */
    int epoch, epochs;
    double train_loss, train_acc, val_loss, val_acc; /* val_* are -1 without a validation set */
    double lr, seconds, images_per_s;
    int improved;        /* 1 if this epoch's model became the best so far */
};

struct cnn_trainer;
struct cnn_train_hooks {
    size_t size; /* sizeof(struct cnn_train_hooks) */
    void (*on_batch)(const struct cnn_batch_stats *s, void *user);
    void (*on_epoch)(const struct cnn_epoch_stats *s, void *user);
    /* The model just became the best by validation (or, without validation, the latest):
     * save it if you want it. Non-zero return stops training with that status. */
    int (*on_best)(const struct cnn_model *m, void *user);
    /* A consistent point to save a checkpoint (cnn_trainer_save): after every epoch, and when
     * stopped mid-epoch. Non-zero return stops training with that status. */
    int (*on_checkpoint)(const struct cnn_trainer *t, void *user);
    void *user;
    volatile sig_atomic_t *stop; /* non-zero: finish the step, checkpoint, stop */
};

/* A new run that trains m (borrowed; it must outlive the trainer, and the trainer owns its
 * writes). cfg is copied. [once] */
CNN_API int cnn_trainer_new(struct cnn_model *m, const struct cnn_train_cfg *cfg,
                            struct cnn_trainer **out);
/* Continue from a checkpoint file. *model is new (the caller frees it after the trainer);
 * threads overrides the saved thread count (0 = OpenMP's default; results are bit-identical
 * only with the same count). Nothing read from the file is used as a path. [once] */
CNN_API int cnn_trainer_resume(const char *path, int threads, struct cnn_model **model,
                               struct cnn_trainer **out);
CNN_API void cnn_trainer_free(struct cnn_trainer *t); /* [once] */
/* The caller's reducer (copied; NULL: none, the default). [ctx] */
CNN_API void cnn_trainer_set_reducer(struct cnn_trainer *t, const struct cnn_reducer *r);
/* Data-parallel training over `ranks` processes, this one being `rank` (0-based; 0 of 1 is
 * the default). Every process runs the same trainer (same configuration, seed and data, or the
 * same checkpoint) with a reducer that sums across all of them. Each batch of cfg.batch images
 * (and each batch given to cnn_trainer_step, which every process passes whole) is split:
 * process r computes images [n*r/ranks, n*(r+1)/ranks), as thread r of a team of `ranks`
 * threads would. The reducer then sums batch-norm statistics, gradients, the step's loss and
 * accuracy, and validation (also split), so every process takes the same step and holds the
 * same weights. A last batch smaller than `ranks` is merged into the one before. With two
 * ranks of one thread each the weights equal, bit for bit, one process on two threads; with
 * more, the gradient sums may be added in another order. Nothing about ranks is saved in a
 * checkpoint: a run may resume on another number of them. CNN_ERR_ARG when rank is not in
 * [0, ranks), ranks not in [1, 65536], or cfg.batch < ranks. [ctx] */
CNN_API int cnn_trainer_set_ranks(struct cnn_trainer *t, int rank, int ranks);

/* One step: forward, loss, backward, the reducer, then the optimizer at the scheduled rate.
 * x (n, c, h, w) normalised (cnn_model_get_norm), labels (n), n >= 1; a batch larger than any
 * before grows the trainer's buffers. Dropout draws from (seed, step number). *loss (mean) and
 * *correct may be NULL. CNN_ERR_NAN leaves the parameters as they were. [ctx] [model] */
CNN_API int cnn_trainer_step(struct cnn_trainer *t, const float *x, const uint8_t *labels, int n,
                             float *loss, int *correct);
/* The rest of the current epoch over data (the first cfg.limit images; cfg.val of them held
 * out), then validation; *stats out (may be NULL). Returns CNN_OK, CNN_ERR_INTERRUPTED when
 * hooks->stop was set mid-epoch (resume by calling it again, or save a checkpoint), CNN_ERR_NAN,
 * or CNN_ERR_ARG when data does not fit the model or differs from the data this run started
 * on. hooks may be NULL; only on_batch and stop are used. [ctx] [model] */
CNN_API int cnn_trainer_epoch(struct cnn_trainer *t, const struct cnn_dataset *data,
                              const struct cnn_train_hooks *hooks, struct cnn_epoch_stats *stats);
/* Epochs until cfg.epochs are done, calling every hook. Returns CNN_OK, CNN_ERR_INTERRUPTED
 * (on_checkpoint was called first), CNN_ERR_NAN (no checkpoint after the bad step: the last
 * one stays good), or a hook's status. [ctx] [model] */
CNN_API int cnn_trainer_run(struct cnn_trainer *t, const struct cnn_dataset *data,
                            const struct cnn_train_hooks *hooks);
/* The validation split of a run over n images holding out n_val (cfg.val), the same for every
 * seed: the last n_val of a fixed permutation of 0..n-1. val_idx (n_val) gets the held-out
 * indices and train_idx (n - n_val; may be NULL) the others, both ascending. CNN_ERR_ARG
 * unless 0 <= n_val < n, CNN_ERR_NOMEM. [safe] */
CNN_API int cnn_val_split(int n, int n_val, int *val_idx, int *train_idx);
/* What the trainer records as data_fingerprint and val_fingerprint: hex crc32 of the first n
 * images and of their labels; of the held-out indices (little-endian u32) and of their labels.
 * A model's split can be rebuilt with cnn_val_split and checked with these. [safe] */
CNN_API void cnn_split_fingerprints(const struct cnn_dataset *d, int n, const int *val_idx,
                                    int n_val, char data_fp[24], char val_fp[24]);
/* Fit m's typicality (m: the trained model, or the best epoch's copy of it) on the data t
 * trained on: a Gaussian over features of up to 10,000 of its training images, calibrated on
 * the validation split (or, with fewer than 500 validation images, on training images the fit
 * did not use). CNN_ERR_ARG when t has not run on data. [ctx] */
CNN_API int cnn_trainer_fit_typicality(const struct cnn_trainer *t, const struct cnn_dataset *data,
                                       struct cnn_model *m);
/* Change the augmentation level (cnn_train_cfg.augment) of a run that has not taken a step:
 * for a caller that picks it from the data. CNN_ERR_ARG once a step was taken or for a level
 * out of range. [ctx] */
CNN_API int cnn_trainer_set_augment(struct cnn_trainer *t, int augment);
/* Change the number of epochs (cnn_train_cfg.epochs) of a run that has not taken a step, for
 * the same kind of caller. CNN_ERR_ARG once a step was taken or for a count out of range. [ctx] */
CNN_API int cnn_trainer_set_epochs(struct cnn_trainer *t, int epochs);
/* Write a checkpoint: the model and everything needed to continue exactly. [ctx] */
CNN_API int cnn_trainer_save(const struct cnn_trainer *t, const char *path);

/* Progress and settings. [ctx] */
CNN_API int cnn_trainer_epochs_done(const struct cnn_trainer *t);
CNN_API long cnn_trainer_steps_done(const struct cnn_trainer *t);
CNN_API double cnn_trainer_best_val(const struct cnn_trainer *t); /* -1 if none */
/* The trainer's configuration into *cfg; cfg->size must be set (as cnn_train_cfg_default does). */
CNN_API int cnn_trainer_cfg(const struct cnn_trainer *t, struct cnn_train_cfg *cfg);

/* ---------------------------------------------------------------------------------------------
 * Evaluation metrics. [safe] (each struct to one thread)
 */
struct cnn_metrics {
    int n_classes;
    long n, correct;
    long confusion[CNN_MAX_CLASSES][CNN_MAX_CLASSES]; /* [true][predicted] */
    double precision[CNN_MAX_CLASSES], recall[CNN_MAX_CLASSES], f1[CNN_MAX_CLASSES];
    long support[CNN_MAX_CLASSES];
    int never_predicted[CNN_MAX_CLASSES]; /* precision set to 0 because nothing was predicted */
    double macro_p, macro_r, macro_f1, weighted_p, weighted_r, weighted_f1;
    double accuracy;
};
CNN_API void cnn_metrics_init(struct cnn_metrics *m, int n_classes);
CNN_API void cnn_metrics_add(struct cnn_metrics *m, int truth, int predicted);
/* Fill precision/recall/F1 and averages from the confusion matrix. */
CNN_API void cnn_metrics_finish(struct cnn_metrics *m);

/* ---------------------------------------------------------------------------------------------
 * Images: decode (PNG via libpng, JPEG via libjpeg-turbo, BMP, GIF, TGA, PNM via stb_image;
 * an image over CNN_IMAGE_MAX_PIXELS is refused from its header, before decoding) and prepare
 * like MNIST: grayscale, polarity from the background, contrast normalised, cropped to the
 * ink, longer side scaled to 20 px, placed by centre of mass in 28x28. Output is light-on-dark
 * u8, like the IDX files, ready for cnn_predict_u8. All [safe].
 */
#define CNN_IMAGE_MAX_PIXELS (50L * 1000 * 1000)
struct cnn_image {
    int w, h;
    uint8_t *gray;  /* (h, w) luminance, alpha composited on white, owned */
};
CNN_API int cnn_image_load(const char *path, struct cnn_image *out);
CNN_API int cnn_image_decode(const void *buf, size_t len, const char *name,
                             struct cnn_image *out);
CNN_API void cnn_image_free(struct cnn_image *img);
/* Returns CNN_ERR_NODIGIT when no ink is found. out is 28*28 bytes. */
CNN_API int cnn_image_to_mnist(const struct cnn_image *img, uint8_t out[28 * 28]);
/* What cnn_image_to_mnist found in the picture (filled on CNN_OK; may grow at the end). */
struct cnn_image_found {
    size_t size;        /* sizeof(struct cnn_image_found), set by the caller */
    int objects;        /* digit-sized ink objects: 1, or more when the picture holds several
                           digits (the heaviest one is prepared; see image.c) */
    int x0, y0, x1, y1; /* the prepared digit's box in the picture's pixels, inclusive */
};
/* cnn_image_to_mnist, and what it found. found may be NULL. */
CNN_API int cnn_image_to_mnist_found(const struct cnn_image *img, uint8_t out[28 * 28],
                                     struct cnn_image_found *found);
/* Write 8-bit gray (h, w) as PNG, atomically (a temporary, then rename). */
CNN_API int cnn_image_write_png(const char *path, const uint8_t *gray, int w, int h);

#ifdef __cplusplus
}
#endif
#endif /* CNN_H */
