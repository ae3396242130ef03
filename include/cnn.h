/*
 * cnn.h - libcnn: a small convolutional neural network library for MNIST-sized images.
 *
 * What it is: layers with forward and backward passes (NCHW float32, batch-major), a readable
 * network spec, SGD/Adam(W) over one flat parameter vector, a training loop with checkpoints,
 * evaluation metrics, strict IDX and model-file readers, and MNIST-style image preprocessing.
 * What it is not: a general autodiff framework. Networks are a plain sequence of layers.
 *
 * Conventions
 *   - Fallible functions return CNN_OK (0) or a negative CNN_ERR_*; cnn_errmsg() then gives a
 *     one-line detail ("data/x.idx: magic 0x00000803, expected 0x00000801 (IDX u8 labels)").
 *     The detail is thread-local. The library never prints, exits or aborts on bad data.
 *   - cnn_x_new()/cnn_x_load() return objects the caller owns; cnn_x_free(NULL) does nothing.
 *   - Randomness comes only from a struct cnn_rng the caller passes in: same seed, same thread
 *     count, same results, bit for bit.
 *
 * Example: classify one 28x28 image with a trained model
 *
 *     struct cnn_net *net;
 *     if (cnn_model_load("mnist.model", &net, NULL) != CNN_OK) {
 *         fprintf(stderr, "%s\n", cnn_errmsg());
 *         return 1;
 *     }
 *     float probs[10];
 *     cnn_net_predict_u8(net, pixels, 1, probs);   // pixels: 784 bytes, 0 = background
 *     cnn_net_free(net);
 */
#ifndef CNN_H
#define CNN_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

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
    CNN_ERR_INTERRUPTED = -7, /* training was stopped through cnn_train_cfg.stop */
    CNN_ERR_NODIGIT = -8,     /* an image holds no ink to classify */
    CNN_ERR_LIMIT = -9        /* input larger than a safety limit */
};

/* The detail message of the last failing call on this thread ("" if none). Borrowed. */
const char *cnn_errmsg(void);
/* A short fixed name for a status code, e.g. "format error". */
const char *cnn_status_str(int status);

/* ---------------------------------------------------------------------------------------------
 * Random numbers: splitmix64, explicit state, no globals.
 */
struct cnn_rng {
    uint64_t s;
};
void cnn_rng_seed(struct cnn_rng *r, uint64_t seed);
uint64_t cnn_rng_u64(struct cnn_rng *r);
float cnn_rng_uniform(struct cnn_rng *r); /* [0, 1) */
float cnn_rng_normal(struct cnn_rng *r);  /* mean 0, std 1 */
/* A stateless hash of (seed, i) to [0,1): lets parallel loops draw reproducible numbers. */
float cnn_rng_hash_uniform(uint64_t seed, uint64_t i);

/* ---------------------------------------------------------------------------------------------
 * IDX files (http://yann.lecun.com/exdb/mnist/ format): u8 images (N,H,W) and u8 labels (N).
 * Raw or gzip, detected by content. Every header field is checked against the real size.
 */
#define CNN_IDX_MAX_DIMS 3
struct cnn_idx {
    int ndim;                   /* 1 for labels, 3 for images */
    int dims[CNN_IDX_MAX_DIMS]; /* dims[0] = number of items */
    size_t size;                /* product of dims, bytes in data */
    uint8_t *data;              /* owned */
};
/* Load an IDX file of u8 data with 1 or 3 dimensions. The name in errors is `path`. */
int cnn_idx_load(const char *path, struct cnn_idx *out);
/* The same from memory; `name` is used in error messages. Used by the fuzzer. */
int cnn_idx_parse(const void *buf, size_t len, const char *name, struct cnn_idx *out);
void cnn_idx_free(struct cnn_idx *idx);

#define CNN_MAX_CLASSES 10
/* Images with labels, checked together: equal counts, labels < n_classes. */
struct cnn_dataset {
    int n, h, w;       /* n images of h x w, one channel */
    int n_classes;     /* 10 */
    uint8_t *images;   /* (n, h, w), owned */
    uint8_t *labels;   /* (n), owned */
};
int cnn_dataset_load(const char *images_path, const char *labels_path, struct cnn_dataset *out);
/* Loads DIR/{train,t10k}-{images-idx3,labels-idx1}-ubyte, with or without .gz.
 * split is "train" or "test". */
int cnn_dataset_load_dir(const char *dir, const char *split, struct cnn_dataset *out);
void cnn_dataset_free(struct cnn_dataset *ds);

/* ---------------------------------------------------------------------------------------------
 * Networks.
 *
 * Spec: comma-separated layers, each a name, positional numbers and key=value options:
 *     conv 32 3 pad=1, bn, relu, maxpool 2, dropout 0.25, dense 128, relu, dense 10
 * The final layer's outputs are the class logits; softmax + cross-entropy is implicit.
 * See README.md for every layer and option.
 */
struct cnn_net;

/* Parse `spec`, infer shapes for inputs of (c,h,w), lay out parameters. Parameters are zero
 * until cnn_net_init_params or a load. On a bad spec returns CNN_ERR_SPEC and the message
 * names the offending layer ("layer 3 'conv 32 9': kernel 9 larger than input 7x7"). */
int cnn_net_new(const char *spec, int c, int h, int w, struct cnn_net **out);
void cnn_net_free(struct cnn_net *net);
/* He/Kaiming-normal weights for relu nets, zero biases, batch norm gamma 1 beta 0. */
void cnn_net_init_params(struct cnn_net *net, struct cnn_rng *rng);
/* Allocate activations for batches of up to max_batch. Called implicitly by forward. */
int cnn_net_reserve(struct cnn_net *net, int max_batch);
/* Threads for OpenMP loops and OpenBLAS (0 = number of cores). Process-wide. */
void cnn_set_threads(int n);
int cnn_get_threads(void);

const char *cnn_net_spec(const struct cnn_net *net);  /* normalised spec text, borrowed */
size_t cnn_net_n_params(const struct cnn_net *net);
size_t cnn_net_n_state(const struct cnn_net *net);    /* batch-norm running statistics */
int cnn_net_n_classes(const struct cnn_net *net);
void cnn_net_input_shape(const struct cnn_net *net, int *c, int *h, int *w);
float *cnn_net_params(struct cnn_net *net);           /* borrowed, n_params floats */
float *cnn_net_grads(struct cnn_net *net);            /* borrowed, same layout */
float *cnn_net_state(struct cnn_net *net);            /* borrowed, n_state floats */

/* Input normalisation applied by the predict functions: x = (pixel/255 - mean) / std. */
void cnn_net_set_norm(struct cnn_net *net, float mean, float std);
void cnn_net_get_norm(const struct cnn_net *net, float *mean, float *std);

struct cnn_layer_info {
    const char *kind;   /* "conv", "bn", ... */
    char text[64];      /* the layer as it would be written in a spec */
    int c, h, w;        /* output shape per image (h = w = 1 after dense) */
    size_t n_params;
    double mflops;      /* forward, per image */
};
int cnn_net_n_layers(const struct cnn_net *net);
void cnn_net_layer_info(const struct cnn_net *net, int i, struct cnn_layer_info *out);

/* Inference (batch norm uses running statistics, dropout is off).
 * x (n, c, h, w) already normalised; probs (n, n_classes) out. */
int cnn_net_predict(struct cnn_net *net, const float *x, int n, float *probs);
/* The same from raw u8 pixels (n, c, h, w), applying the net's normalisation. */
int cnn_net_predict_u8(struct cnn_net *net, const uint8_t *pixels, int n, float *probs);

/* One training forward + backward on a batch: leaves gradients in cnn_net_grads (zeroed first).
 * x (n,c,h,w) normalised, labels (n). Returns mean loss in *loss and the number of correct
 * argmax predictions in *correct (either may be NULL). label_smoothing in [0,1). */
int cnn_net_train_batch(struct cnn_net *net, const float *x, const uint8_t *labels, int n,
                        float label_smoothing, struct cnn_rng *rng, float *loss, int *correct);

/* ---------------------------------------------------------------------------------------------
 * Optimizers over the flat parameter vector.
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
/* Fill defaults: SGD momentum 0.9, Adam betas (0.9, 0.999), eps 1e-8, no decay. */
void cnn_optim_cfg_default(struct cnn_optim_cfg *cfg, int kind);
struct cnn_optim;
int cnn_optim_new(const struct cnn_net *net, const struct cnn_optim_cfg *cfg,
                  struct cnn_optim **out);
void cnn_optim_free(struct cnn_optim *opt);
/* params -= update(grads) with learning rate lr. */
void cnn_optim_step(struct cnn_optim *opt, struct cnn_net *net, float lr);

enum cnn_sched_kind { CNN_SCHED_CONST = 0, CNN_SCHED_STEP, CNN_SCHED_COSINE, CNN_SCHED_ONECYCLE };
struct cnn_sched {
    int kind;
    float lr;         /* base (peak for one-cycle) */
    float min_lr;     /* cosine/one-cycle floor */
    float step_epochs;/* step: multiply by gamma every step_epochs epochs */
    float gamma;
    float warmup;     /* one-cycle: fraction of all steps spent warming up */
};
/* Learning rate at `step` of `total` steps, with `per_epoch` steps per epoch. */
float cnn_sched_lr(const struct cnn_sched *s, long step, long total, long per_epoch);

/* ---------------------------------------------------------------------------------------------
 * Data augmentation: random affine (shift, rotation, scale, shear) with bilinear sampling,
 * optionally followed by an elastic distortion (Simard et al. 2003).
 */
struct cnn_augment {
    float shift;     /* max shift in pixels */
    float rotate;    /* max rotation in degrees */
    float scale;     /* max relative scale change (0.1 = 0.9..1.1) */
    float shear;     /* max shear in degrees */
    float elastic_alpha, elastic_sigma; /* alpha 0 = no elastic distortion */
};
/* Sensible MNIST defaults: shift 2, rotate 10, scale 0.1, shear 10; elastic off or on. */
void cnn_augment_default(struct cnn_augment *a, int elastic);
/* One image: src (h,w) u8 -> dst (h,w) float normalised as (v/255 - mean)/std. */
void cnn_augment_image(const struct cnn_augment *a, const uint8_t *src, float *dst, int h, int w,
                       float mean, float std, struct cnn_rng *rng);

/* ---------------------------------------------------------------------------------------------
 * Training: epochs of shuffled mini-batches, validation on images held out of the training
 * set, the best model by validation accuracy, a checkpoint after every epoch, exact resume.
 */
struct cnn_train_cfg {
    int epochs, batch;
    struct cnn_optim_cfg optim;
    struct cnn_sched sched;
    float label_smoothing;
    int augment;               /* 0 none, 1 affine, 2 affine + elastic */
    uint64_t seed;
    int val;                   /* images held out of the training set for validation */
    int limit;                 /* use only the first `limit` images of the data (0 = all) */
    char out[512];             /* best model path ("" = none) */
    char checkpoint[512];      /* checkpoint path ("" = none) */
    char dataset[64];          /* recorded in the model's metadata */
};
/* Defaults: 10 epochs, batch 128, Adam lr 1e-3 constant, val 5000, seed 1. */
void cnn_train_cfg_default(struct cnn_train_cfg *cfg);

struct cnn_batch_stats {
    int epoch, epochs;   /* 1-based */
    int batch, batches;  /* 1-based, within the epoch */
    double loss, acc;    /* running means over the epoch so far */
    double images_per_s, eta_s, lr;
};
struct cnn_epoch_stats {
    int epoch, epochs;
    double train_loss, train_acc, val_loss, val_acc; /* val_* are -1 without a validation set */
    double lr, seconds, images_per_s;
    int improved;        /* 1 if this epoch's model became the best so far (and was saved) */
};
struct cnn_train_hooks {
    void (*on_batch)(const struct cnn_batch_stats *s, void *user);
    void (*on_epoch)(const struct cnn_epoch_stats *s, void *user);
    void *user;
    volatile sig_atomic_t *stop; /* non-zero: finish the batch, checkpoint, stop */
};

struct cnn_trainer;
/* A new run over `net` (borrowed; it must outlive the trainer). */
int cnn_trainer_new(struct cnn_net *net, const struct cnn_train_cfg *cfg,
                    struct cnn_trainer **out);
/* Continue from a checkpoint: *net (owned by the caller) and *cfg are restored from it. */
int cnn_trainer_resume(const char *checkpoint, struct cnn_net **net, struct cnn_train_cfg *cfg,
                       struct cnn_trainer **out);
/* Train until cfg.epochs are done. Returns CNN_OK, CNN_ERR_INTERRUPTED (a checkpoint was
 * saved; resume it), CNN_ERR_NAN (the last good checkpoint is kept), or an I/O error. */
int cnn_trainer_run(struct cnn_trainer *t, const struct cnn_dataset *data,
                    const struct cnn_train_hooks *hooks);
/* Epochs completed, and the best validation accuracy so far (-1 if none). */
int cnn_trainer_epoch(const struct cnn_trainer *t);
double cnn_trainer_best_val(const struct cnn_trainer *t);
void cnn_trainer_free(struct cnn_trainer *t);

/* ---------------------------------------------------------------------------------------------
 * Model files: magic, version, spec, normalisation, params, state, metadata, CRC-32.
 * Little-endian. Writes go to PATH.tmp and are renamed into place.
 */
struct cnn_meta {
    char dataset[64];
    char date[32];       /* ISO 8601, UTC */
    int epochs;
    float val_acc;       /* 0..1, or -1 if unknown */
    long train_images;
};
int cnn_model_save(const struct cnn_net *net, const struct cnn_meta *meta, const char *path);
/* Rebuilds the network from the stored spec. meta may be NULL. */
int cnn_model_load(const char *path, struct cnn_net **out, struct cnn_meta *meta);
int cnn_model_parse(const void *buf, size_t len, const char *name, struct cnn_net **out,
                    struct cnn_meta *meta);

/* ---------------------------------------------------------------------------------------------
 * Evaluation metrics.
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
void cnn_metrics_init(struct cnn_metrics *m, int n_classes);
void cnn_metrics_add(struct cnn_metrics *m, int truth, int predicted);
/* Fill precision/recall/F1 and averages from the confusion matrix. */
void cnn_metrics_finish(struct cnn_metrics *m);

/* ---------------------------------------------------------------------------------------------
 * Images: decode (PNG, JPEG, BMP, GIF, TGA, PNM via stb_image) and prepare like MNIST:
 * grayscale, polarity from the background, contrast normalised, cropped to the ink,
 * longer side scaled to 20 px, placed by centre of mass in 28x28. Output is light-on-dark
 * u8, like the IDX files, ready for cnn_net_predict_u8.
 */
#define CNN_IMAGE_MAX_PIXELS (50L * 1000 * 1000)
struct cnn_image {
    int w, h;
    uint8_t *gray;  /* (h, w) luminance, alpha composited on white, owned */
};
int cnn_image_load(const char *path, struct cnn_image *out);
int cnn_image_decode(const void *buf, size_t len, const char *name, struct cnn_image *out);
void cnn_image_free(struct cnn_image *img);
/* Returns CNN_ERR_NODIGIT when no ink is found. out is 28*28 bytes. */
int cnn_image_to_mnist(const struct cnn_image *img, uint8_t out[28 * 28]);
/* Write 8-bit gray (h, w) as PNG, atomically (PATH.tmp, then rename). */
int cnn_image_write_png(const char *path, const uint8_t *gray, int w, int h);

#ifdef __cplusplus
}
#endif
#endif /* CNN_H */
