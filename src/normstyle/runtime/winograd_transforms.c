/* Winograd F(2x2, 3x3), F(4x4, 3x3) and F(6x6, 3x3) input and output transforms on channels-last
 * float32 or bfloat16 tensors, compiled on the machine that runs them (normstyle/runtime/native.py).
 *
 * The products between the two transforms stay in the BLAS (torch.bmm); these loops replace
 * the transforms' strided slices, stacks and small matrix products, which read and wrote the
 * feature map several times over: here each tile's (m+2)x(m+2) block is read once, transformed
 * in the caches, 16 channels at a time, and written once. The matrices are those of
 * normstyle/nets/winograd.py (F(2, 3) with the points 0, +-1 and infinity; Lavin & Gray's F(4, 3);
 * F(6, 3) with the points 0, +-1, +-2, +-1/2 and infinity), as compile-time constants, so the
 * compiler drops the zero coefficients. Tested against torch's convolution in float64
 * (tests/test_native.py).
 *
 * bfloat16 (F(2x2, 3x3) only: its transforms have coefficients 0 and +-1 and add no more error than
 * a direct bf16 convolution's, where the larger tiles' add ten times as much): the inputs are
 * widened to float32 exactly, transformed in float32 and rounded once, to nearest even.
 *
 * Layouts (every index row-major, the last one contiguous):
 *   x  [batch][height][width][channels]                   a channels-last NCHW tensor
 *   V  [(b * n + a)][tile][channels], n = m + 2           the input transform B^T d B, entry
 *                                                         (a: row frequency, b: column frequency)
 *   Mp [(b * n + a)][tile][out_channels]                  the products
 *   y  [batch][height][width][out_channels]               A^T Mp A (+ bias), channels-last
 * with tile = (image * rows + row) * cols + col over blocks of m x m outputs, and the input's
 * one-pixel zero border (padding 1) read as zeros. Channel counts must be multiples of LANES.
 */
#include <stdint.h>
#include <stddef.h>

#define LANES 16

static const float BT2[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
static const float AT2[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
static const float BT4[6][6] = {
    {4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
    {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0},  {0, 4, 0, -5, 0, 1}};
static const float AT4[4][6] = {
    {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
static const float BT6[8][8] = {
    {-1, 0, 21.f / 4, 0, -21.f / 4, 0, 1, 0},
    {0, 1, 1, -17.f / 4, -17.f / 4, 1, 1, 0},
    {0, -1, 1, 17.f / 4, -17.f / 4, -1, 1, 0},
    {0, 1.f / 2, 1.f / 4, -5.f / 2, -5.f / 4, 2, 1, 0},
    {0, -1.f / 2, 1.f / 4, 5.f / 2, -5.f / 4, -2, 1, 0},
    {0, 2, 4, -5.f / 2, -5, 1.f / 2, 1, 0},
    {0, -2, 4, 5.f / 2, -5, -1.f / 2, 1, 0},
    {0, -1, 0, 21.f / 4, 0, -21.f / 4, 0, 1}};
static const float AT6[6][8] = {
    {1, 1, 1, 1, 1, 1, 1, 0},
    {0, 1, -1, 2, -2, 1.f / 2, -1.f / 2, 0},
    {0, 1, 1, 4, 4, 1.f / 4, 1.f / 4, 0},
    {0, 1, -1, 8, -8, 1.f / 8, -1.f / 8, 0},
    {0, 1, 1, 16, 16, 1.f / 16, 1.f / 16, 0},
    {0, 1, -1, 32, -32, 1.f / 32, -1.f / 32, 1}};

/* LANES channels as one vector (GCC/Clang vector extension; unaligned, may alias floats). */
typedef float lanes_t __attribute__((vector_size(4 * LANES), aligned(4), may_alias));
/* LANES bfloat16 values, and LANES float32 bit patterns. */
typedef uint16_t bf16_lanes_t __attribute__((vector_size(2 * LANES), aligned(2), may_alias));
typedef uint32_t bits_t __attribute__((vector_size(4 * LANES)));

static inline __attribute__((always_inline)) lanes_t load_f32(const float *p) { return *(const lanes_t *)p; }
static inline __attribute__((always_inline)) void store_f32(float *p, lanes_t value) { *(lanes_t *)p = value; }

/* bfloat16 is the upper half of a float32: widening is exact. */
static inline __attribute__((always_inline)) lanes_t load_bf16(const uint16_t *p)
{
    return (lanes_t)(__builtin_convertvector(*(const bf16_lanes_t *)p, bits_t) << 16);
}

/* Rounded to the nearest bfloat16, ties to even (as torch rounds); NaN stays NaN. */
static inline __attribute__((always_inline)) void store_bf16(uint16_t *p, lanes_t value)
{
    const bits_t bits = (bits_t)value;
    const bits_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
    const bits_t nan = (bits_t)((bits & 0x7FFFFFFFu) > 0x7F800000u);
    const bits_t quiet = (bits >> 16) | 0x40u;
    *(bf16_lanes_t *)p = __builtin_convertvector((rounded & ~nan) | (quiet & nan), bf16_lanes_t);
}

/* One tile's input transform for LANES channels: d is the (N x N) block, zero outside x. */
#define INPUT_TRANSFORM(NAME, N, M, BT, T, LOAD, STORE)                                          \
    static void NAME(const T *x, int64_t batch, int64_t height, int64_t width,                   \
                     int64_t channels, T *v, int64_t rows, int64_t cols)                          \
    {                                                                                             \
        const int64_t tiles = batch * rows * cols, groups = channels / LANES;                     \
        _Pragma("omp parallel for schedule(static)")                                              \
        for (int64_t job = 0; job < tiles * groups; job++) {                                      \
            const int64_t t = job / groups, c0 = (job % groups) * LANES;                          \
            const int64_t image = t / (rows * cols), row = (t / cols) % rows, col = t % cols;     \
            lanes_t d[N][N], u[N][N];                                                             \
            for (int k = 0; k < N; k++) {                                                         \
                const int64_t h = row * M + k - 1;                                                \
                for (int l = 0; l < N; l++) {                                                     \
                    const int64_t w = col * M + l - 1;                                            \
                    if (h >= 0 && h < height && w >= 0 && w < width)                              \
                        d[k][l] = LOAD(x + ((image * height + h) * width + w) * channels + c0);   \
                    else                                                                          \
                        d[k][l] = (lanes_t){0};                                                   \
                }                                                                                 \
            }                                                                                     \
            _Pragma("GCC unroll 8") for (int a = 0; a < N; a++) {                                 \
                _Pragma("GCC unroll 8") for (int l = 0; l < N; l++) {                             \
                    lanes_t acc = {0};                                                            \
                    _Pragma("GCC unroll 8") for (int k = 0; k < N; k++)                           \
                        if (BT[a][k] != 0.0f) acc += BT[a][k] * d[k][l];                          \
                    u[a][l] = acc;                                                                \
                }                                                                                 \
            }                                                                                     \
            _Pragma("GCC unroll 8") for (int b = 0; b < N; b++) {                                 \
                _Pragma("GCC unroll 8") for (int a = 0; a < N; a++) {                             \
                    lanes_t acc = {0};                                                            \
                    _Pragma("GCC unroll 8") for (int l = 0; l < N; l++)                           \
                        if (BT[b][l] != 0.0f) acc += BT[b][l] * u[a][l];                          \
                    STORE(v + ((size_t)(b * N + a) * tiles + t) * channels + c0, acc);           \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
    }

/* One tile's output transform for LANES channels, cropped to the feature map, bias added. */
#define OUTPUT_TRANSFORM(NAME, N, M, AT, T, LOAD, STORE)                                         \
    static void NAME(const T *p, int64_t batch, int64_t height, int64_t width,                   \
                     int64_t channels, const float *bias, T *y, int64_t rows, int64_t cols)       \
    {                                                                                             \
        const int64_t tiles = batch * rows * cols, groups = channels / LANES;                     \
        _Pragma("omp parallel for schedule(static)")                                              \
        for (int64_t job = 0; job < tiles * groups; job++) {                                      \
            const int64_t t = job / groups, c0 = (job % groups) * LANES;                          \
            const int64_t image = t / (rows * cols), row = (t / cols) % rows, col = t % cols;     \
            const lanes_t start = bias ? *(const lanes_t *)(bias + c0) : (lanes_t){0};            \
            lanes_t z[N][M];                                                                      \
            _Pragma("GCC unroll 8") for (int b = 0; b < N; b++) {                                 \
                lanes_t s[N];                                                                     \
                for (int a = 0; a < N; a++)                                                       \
                    s[a] = LOAD(p + ((size_t)(b * N + a) * tiles + t) * channels + c0);          \
                _Pragma("GCC unroll 8") for (int i = 0; i < M; i++) {                             \
                    lanes_t acc = {0};                                                            \
                    _Pragma("GCC unroll 8") for (int a = 0; a < N; a++)                           \
                        if (AT[i][a] != 0.0f) acc += AT[i][a] * s[a];                             \
                    z[b][i] = acc;                                                                \
                }                                                                                 \
            }                                                                                     \
            for (int i = 0; i < M; i++) {                                                         \
                const int64_t h = row * M + i;                                                    \
                if (h >= height) break;                                                           \
                _Pragma("GCC unroll 8") for (int j = 0; j < M; j++) {                             \
                    const int64_t w = col * M + j;                                                \
                    if (w >= width) break;                                                        \
                    lanes_t acc = start;                                                          \
                    _Pragma("GCC unroll 8") for (int b = 0; b < N; b++)                           \
                        if (AT[j][b] != 0.0f) acc += AT[j][b] * z[b][i];                          \
                    STORE(y + ((image * height + h) * width + w) * channels + c0, acc);          \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
    }

INPUT_TRANSFORM(input_f2, 4, 2, BT2, float, load_f32, store_f32)
INPUT_TRANSFORM(input_f4, 6, 4, BT4, float, load_f32, store_f32)
INPUT_TRANSFORM(input_f6, 8, 6, BT6, float, load_f32, store_f32)
INPUT_TRANSFORM(input_f2_bf16, 4, 2, BT2, uint16_t, load_bf16, store_bf16)
OUTPUT_TRANSFORM(output_f2, 4, 2, AT2, float, load_f32, store_f32)
OUTPUT_TRANSFORM(output_f4, 6, 4, AT4, float, load_f32, store_f32)
OUTPUT_TRANSFORM(output_f6, 8, 6, AT6, float, load_f32, store_f32)
OUTPUT_TRANSFORM(output_f2_bf16, 4, 2, AT2, uint16_t, load_bf16, store_bf16)

int normstyle_lanes(void) { return LANES; }

/* x and v are float32, or bfloat16 (as uint16) where bf16 is 1. Returns 0, or -1 for a tile,
 * type or channel count these loops do not handle (nothing written). */
int normstyle_winograd_input(const void *x, int64_t batch, int64_t height, int64_t width,
                             int64_t channels, int64_t tile, void *v, int64_t rows,
                             int64_t cols, int64_t bf16)
{
    if (channels <= 0 || channels % LANES) return -1;
    if (bf16 && tile == 2) input_f2_bf16(x, batch, height, width, channels, v, rows, cols);
    else if (bf16) return -1;
    else if (tile == 2) input_f2(x, batch, height, width, channels, v, rows, cols);
    else if (tile == 4) input_f4(x, batch, height, width, channels, v, rows, cols);
    else if (tile == 6) input_f6(x, batch, height, width, channels, v, rows, cols);
    else return -1;
    return 0;
}

/* p and y are float32, or bfloat16 where bf16 is 1; the bias (or NULL) is float32. */
int normstyle_winograd_output(const void *p, int64_t batch, int64_t height, int64_t width,
                              int64_t channels, int64_t tile, const float *bias, void *y,
                              int64_t rows, int64_t cols, int64_t bf16)
{
    if (channels <= 0 || channels % LANES) return -1;
    if (bf16 && tile == 2) output_f2_bf16(p, batch, height, width, channels, bias, y, rows, cols);
    else if (bf16) return -1;
    else if (tile == 2) output_f2(p, batch, height, width, channels, bias, y, rows, cols);
    else if (tile == 4) output_f4(p, batch, height, width, channels, bias, y, rows, cols);
    else if (tile == 6) output_f6(p, batch, height, width, channels, bias, y, rows, cols);
    else return -1;
    return 0;
}
