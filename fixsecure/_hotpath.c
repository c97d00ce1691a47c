/*
 * fixsecure._hotpath: the seal and open runs of specs/hot-path.md in C.
 *
 * A run walks consecutive FIX messages of one buffer and stops, without deciding anything, at the
 * first message it does not fully accept; the Python per-message path then handles that message.
 * The run commits nothing: it returns how far it got and what it produced, and the caller advances
 * the Noise CipherState. There is no cryptography here: every AEAD operation is a call to the
 * `cryptography` AEAD object the caller passes in (its `encrypt_into` / `decrypt_into` methods).
 *
 * Parsing rules mirror fixsecure/wire.py exactly (the differential tests hold them together):
 *   prefix  "8=" 1..16 non-SOH SOH "9=" [1-9][0-9]{0,9} SOH
 *   header  "35=" value SOH, then the longest run of clear-header fields with non-empty values
 *   trailer SOH "10=" three digits (byte sum mod 256) SOH
 * Every offset is checked against the end of the buffer before it is read.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* Lengths and offsets are Py_ssize_t; with 64 bits none of the sums below can overflow (a build
 * for a 32-bit CPython fails here, and fixsecure runs on the Python reference there). */
_Static_assert(sizeof(Py_ssize_t) >= 8, "the C hot path needs a 64-bit Py_ssize_t");

#define SOH 1
#define MAX_BEGIN 16       /* BeginString: 1..16 bytes */
#define MAX_DIGITS 10      /* BodyLength and SecureDataLen: at most 10 digits */
#define MAX_TAG_DIGITS 9   /* tags: at most 9 digits */
#define TRAILER 7          /* "10=nnn" SOH */
#define TAG_BYTES 16       /* AEAD tag of AESGCM and ChaChaPoly */

static PyObject *str_encrypt_into; /* "encrypt_into" */
static PyObject *str_decrypt_into; /* "decrypt_into" */
static PyObject *invalid_tag; /* cryptography.exceptions.InvalidTag */

/* -- parsing ---------------------------------------------------------------------------------- */

/* Offsets of one message, relative to the buffer. */
typedef struct {
    Py_ssize_t start;         /* "8=" */
    Py_ssize_t length_start;  /* "9=" */
    Py_ssize_t header_start;  /* "35=" */
    Py_ssize_t type_start, type_end;
    Py_ssize_t header_end;    /* first byte after the clear header */
    Py_ssize_t trailer;       /* "10=" */
    Py_ssize_t end;           /* one past the final SOH */
} frame;

/* Where the value of a decimal field ends: [1-9][0-9]{0,max-1} then SOH, all before `limit`.
 * With `zero_ok` the single digit "0" is also accepted. Returns -1 otherwise. */
static Py_ssize_t
decimal(const unsigned char *b, Py_ssize_t pos, Py_ssize_t limit, int zero_ok, long long *value)
{
    Py_ssize_t i = pos;
    long long v = 0;
    if (i >= limit || b[i] < '0' || b[i] > '9' || (b[i] == '0' && !zero_ok)) {
        return -1;
    }
    if (b[i] == '0') {
        i++;
    } else {
        while (i < limit && i - pos < MAX_DIGITS && b[i] >= '0' && b[i] <= '9') {
            v = v * 10 + (b[i] - '0');
            i++;
        }
    }
    if (i >= limit || b[i] != SOH) {
        return -1;
    }
    *value = v;
    return i;
}

/* The prefix at `start`: fills length_start, header_start and the trailer/end implied by
 * BodyLength. 0 on success, -1 if the bytes are not a prefix (or not all there yet). */
static int
parse_prefix(const unsigned char *b, Py_ssize_t len, Py_ssize_t start, frame *f)
{
    Py_ssize_t i = start + 2;
    Py_ssize_t stop = start + 2 + MAX_BEGIN + 1;
    long long body_length = 0;
    if (len - start < 2 || b[start] != '8' || b[start + 1] != '=') {
        return -1;
    }
    if (stop > len) {
        stop = len;
    }
    while (i < stop && b[i] != SOH) {
        i++;
    }
    if (i >= stop || i == start + 2) {
        return -1;
    }
    f->start = start;
    f->length_start = i + 1;
    if (len - f->length_start < 2 || b[i + 1] != '9' || b[i + 2] != '=') {
        return -1;
    }
    i = decimal(b, i + 3, len, 0, &body_length);
    if (i < 0) {
        return -1;
    }
    f->header_start = i + 1;
    /* body_length < 10^10 and header_start <= len: no overflow with 64-bit Py_ssize_t; on a
     * 32-bit build, refuse what could not be addressed anyway. */
    if (body_length > (long long)(PY_SSIZE_T_MAX - f->header_start - TRAILER)) {
        return -1;
    }
    f->trailer = f->header_start + (Py_ssize_t)body_length;
    f->end = f->trailer + TRAILER;
    return 0;
}

/* A tag at `pos` ([1-9][0-9]{0,8} then "="): its number, and *eq at the "=". -1 if not a tag. */
static long
tag_at(const unsigned char *b, Py_ssize_t pos, Py_ssize_t limit, Py_ssize_t *eq)
{
    Py_ssize_t i = pos;
    long tag = 0;
    if (i >= limit || b[i] < '1' || b[i] > '9') {
        return -1;
    }
    while (i < limit && i - pos < MAX_TAG_DIGITS && b[i] >= '0' && b[i] <= '9') {
        tag = tag * 10 + (b[i] - '0');
        i++;
    }
    if (i >= limit || b[i] != '=') {
        return -1;
    }
    *eq = i;
    return tag;
}

/* End of a non-empty value starting at `pos`: the position of its SOH, or -1. */
static Py_ssize_t
value_end(const unsigned char *b, Py_ssize_t pos, Py_ssize_t limit)
{
    const unsigned char *soh;
    if (pos >= limit || b[pos] == SOH) {
        return -1;
    }
    soh = memchr(b + pos, SOH, (size_t)(limit - pos));
    return soh == NULL ? -1 : soh - b;
}

/* MsgType and the clear header from f->header_start, every field ending before `limit`.
 * `table[tag]` is non-zero for clear-header tags (table_len entries). 0 or -1. */
static int
parse_header(const unsigned char *b, Py_ssize_t limit, const unsigned char *table,
             Py_ssize_t table_len, frame *f)
{
    Py_ssize_t pos = f->header_start;
    Py_ssize_t eq, end;
    long tag;
    if (limit - pos < 3 || b[pos] != '3' || b[pos + 1] != '5' || b[pos + 2] != '=') {
        return -1;
    }
    end = value_end(b, pos + 3, limit);
    if (end < 0) {
        return -1;
    }
    f->type_start = pos + 3;
    f->type_end = end;
    pos = end + 1;
    for (;;) {
        tag = tag_at(b, pos, limit, &eq);
        if (tag < 0 || tag >= table_len || !table[tag]) {
            break;
        }
        end = value_end(b, eq + 1, limit);
        if (end < 0) {
            break;
        }
        pos = end + 1;
    }
    f->header_end = pos;
    return 0;
}

#if defined(__SSE2__) && !defined(FIXSECURE_NO_SIMD) /* make sanitize tests both versions */
#include <emmintrin.h>

/* The byte sum modulo 256 (FIX CheckSum): SSE2's PSADBW adds 8 bytes into each 64-bit lane,
 * and 64-bit lanes cannot overflow. */
static unsigned int
byte_sum(const unsigned char *b, Py_ssize_t n)
{
    const __m128i zero = _mm_setzero_si128();
    __m128i acc = zero;
    uint64_t lanes[2];
    Py_ssize_t i = 0;
    for (; n - i >= 16; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(b + i));
        acc = _mm_add_epi64(acc, _mm_sad_epu8(v, zero));
    }
    _mm_storeu_si128((__m128i *)(void *)lanes, acc);
    uint64_t total = lanes[0] + lanes[1];
    for (; i < n; i++) {
        total += b[i];
    }
    return (unsigned int)(total & 0xFF);
}
#else
/* The byte sum modulo 256 (FIX CheckSum), eight bytes at a time: each step adds two of a word's
 * bytes into each of four 16-bit lanes, at most 2 * 255 = 510, so a block of 128 words (at most
 * 65,280 per lane) cannot carry from one lane into the next. */
#define SUM_BLOCK_WORDS 128
static unsigned int
byte_sum(const unsigned char *b, Py_ssize_t n)
{
    const uint64_t mask = 0x00FF00FF00FF00FFULL;
    uint64_t total = 0;
    Py_ssize_t i = 0;
    while (n - i >= 8) {
        uint64_t lanes = 0;
        Py_ssize_t words = (n - i) / 8;
        Py_ssize_t block = words < SUM_BLOCK_WORDS ? words : SUM_BLOCK_WORDS;
        for (Py_ssize_t w = 0; w < block; w++, i += 8) {
            uint64_t x;
            memcpy(&x, b + i, 8);
            lanes += (x & mask) + (x >> 8 & mask);
        }
        total += (lanes & 0xFFFF) + (lanes >> 16 & 0xFFFF) + (lanes >> 32 & 0xFFFF) + (lanes >> 48);
    }
    for (; i < n; i++) {
        total += b[i];
    }
    return (unsigned int)(total & 0xFF);
}
#endif

/* SOH "10=" ddd SOH at the trailer, ddd being the byte sum of [start, trailer) mod 256. */
static int
trailer_ok(const unsigned char *b, const frame *f)
{
    const unsigned char *t = b + f->trailer;
    unsigned int sum;
    if (b[f->trailer - 1] != SOH || t[0] != '1' || t[1] != '0' || t[2] != '=' || t[6] != SOH) {
        return 0;
    }
    sum = byte_sum(b + f->start, f->trailer - f->start) & 0xFF;
    return t[3] == '0' + sum / 100 && t[4] == '0' + sum / 10 % 10 && t[5] == '0' + sum % 10;
}

/* -- base64 (RFC 4648 alphabet, padded; strict and canonical when decoding) ------------------ */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static signed char b64_values[256];   /* -1 outside the alphabet */
static unsigned char b64_pairs[4096][2]; /* two characters for each 12 bits */
/* A character's 6 bits pre-shifted to each position of a quantum; BAD outside the alphabet. */
#define BAD 0x01000000u
static uint32_t b64_shifted[4][256];

static void
b64_init(void)
{
    memset(b64_values, -1, sizeof b64_values);
    for (int i = 0; i < 64; i++) {
        b64_values[(unsigned char)b64_alphabet[i]] = (signed char)i;
    }
    for (int i = 0; i < 4096; i++) {
        b64_pairs[i][0] = (unsigned char)b64_alphabet[i >> 6];
        b64_pairs[i][1] = (unsigned char)b64_alphabet[i & 63];
    }
    for (int c = 0; c < 256; c++) {
        int v = b64_values[c];
        for (int k = 0; k < 4; k++) {
            b64_shifted[k][c] = v < 0 ? BAD : (uint32_t)v << (18 - 6 * k);
        }
    }
}

static Py_ssize_t
b64_encoded_len(Py_ssize_t n)
{
    return (n + 2) / 3 * 4;
}

static void
b64_encode(const unsigned char *in, Py_ssize_t n, unsigned char *out)
{
    Py_ssize_t i = 0;
    for (; n - i >= 3; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        memcpy(out, b64_pairs[v >> 12], 2);
        memcpy(out + 2, b64_pairs[v & 0xFFF], 2);
        out += 4;
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *out++ = (unsigned char)b64_alphabet[v >> 18];
        *out++ = (unsigned char)b64_alphabet[v >> 12 & 63];
        *out++ = '=';
        *out++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *out++ = (unsigned char)b64_alphabet[v >> 18];
        *out++ = (unsigned char)b64_alphabet[v >> 12 & 63];
        *out++ = (unsigned char)b64_alphabet[v >> 6 & 63];
        *out++ = '=';
    }
}

/* Decoded length of base64 text of length n, from its length and padding alone (the text itself
 * is checked while decoding), or -1 if the length is not a multiple of 4. */
static Py_ssize_t
b64_decoded_len(const unsigned char *s, Py_ssize_t n)
{
    if (n % 4) {
        return -1;
    }
    if (n == 0) {
        return 0;
    }
    return n / 4 * 3 - (s[n - 1] == '=') - (s[n - 1] == '=' && s[n - 2] == '=');
}

/* Decode strict, canonical base64 into out (b64_decoded_len bytes): 0, or -1 for a character
 * outside the alphabet, misplaced padding, or non-zero padding bits. */
static int
b64_decode(const unsigned char *s, Py_ssize_t n, unsigned char *out)
{
    Py_ssize_t full = n == 0 ? 0 : (s[n - 1] == '=' ? n - 4 : n);
    uint32_t bad = 0;
    Py_ssize_t i = 0;
    for (; i < full; i += 4) {
        uint32_t v = b64_shifted[0][s[i]] | b64_shifted[1][s[i + 1]] |
                     b64_shifted[2][s[i + 2]] | b64_shifted[3][s[i + 3]];
        bad |= v;
        *out++ = (unsigned char)(v >> 16);
        *out++ = (unsigned char)(v >> 8 & 0xFF);
        *out++ = (unsigned char)(v & 0xFF);
    }
    if (i < n) { /* the padded last quantum: "xx==" or "xxx=" */
        uint32_t v = b64_shifted[0][s[i]] | b64_shifted[1][s[i + 1]];
        if (s[i + 2] == '=') {
            bad |= v | ((v & 0xF000) ? BAD : 0); /* the 4 bits the padding leaves unused */
            *out = (unsigned char)(v >> 16);
        } else {
            v |= b64_shifted[2][s[i + 2]];
            bad |= v | ((v & 0xC0) ? BAD : 0); /* the 2 bits the padding leaves unused */
            out[0] = (unsigned char)(v >> 16);
            out[1] = (unsigned char)(v >> 8 & 0xFF);
        }
    }
    return (bad & BAD) ? -1 : 0;
}

/* -- shared pieces ------------------------------------------------------------------------------ */

static int
digits_of(Py_ssize_t v)
{
    int d = 1;
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

/* Write v in decimal at out; returns the number of bytes written. */
static int
put_decimal(unsigned char *out, Py_ssize_t v)
{
    int d = digits_of(v);
    for (int i = d - 1; i >= 0; i--) {
        out[i] = (unsigned char)('0' + v % 10);
        v /= 10;
    }
    return d;
}

/* "8=B" SOH "9=" length SOH H: how every rebuilt or protected message starts. Returns its end. */
static unsigned char *
put_head(unsigned char *p, const unsigned char *b, const frame *f, Py_ssize_t length)
{
    Py_ssize_t begin = f->length_start - f->start;
    Py_ssize_t header = f->header_end - f->header_start;
    memcpy(p, b + f->start, (size_t)begin);
    p += begin;
    *p++ = '9';
    *p++ = '=';
    p += put_decimal(p, length);
    *p++ = SOH;
    memcpy(p, b + f->header_start, (size_t)header);
    return p + header;
}

/* "10=ddd" SOH for the bytes [begin, out). */
static unsigned char *
put_trailer(unsigned char *begin, unsigned char *out)
{
    unsigned int sum = byte_sum(begin, out - begin) & 0xFF;
    out[0] = '1';
    out[1] = '0';
    out[2] = '=';
    out[3] = (unsigned char)('0' + sum / 100);
    out[4] = (unsigned char)('0' + sum / 10 % 10);
    out[5] = (unsigned char)('0' + sum % 10);
    out[6] = SOH;
    return out + TRAILER;
}

/* One direction's AEAD calls: the bound method (aead.encrypt_into or aead.decrypt_into), and the
 * output buffer it writes, reused for every message. The nonce, AD and input go in as fresh bytes
 * objects, which the AEAD reads without the buffer protocol's cost; it keeps none of them. */
typedef struct {
    PyObject *method;
    PyObject *output; /* bytearray: the ciphertext (seal) or the body (open) */
} aead_call;

static int
aead_call_init(aead_call *c, PyObject *aead, PyObject *name)
{
    if (c->method != NULL) {
        return 0;
    }
    if (aead == NULL) {
        PyErr_SetString(PyExc_TypeError, "Runner.__init__ was not called");
        return -1;
    }
    c->method = PyObject_GetAttr(aead, name);
    c->output = c->method ? PyByteArray_FromStringAndSize(NULL, 0) : NULL;
    if (c->output == NULL) {
        Py_CLEAR(c->method);
        return -1;
    }
    return 0;
}

static void
aead_call_clear(aead_call *c)
{
    Py_CLEAR(c->method);
    Py_CLEAR(c->output);
}

/* method(nonce n, input, AD of the message f, output of `output_len` bytes): the output's data,
 * or NULL with the exception set. `input` is consumed (its reference is released). */
static unsigned char *
aead_call_run(aead_call *c, int little_endian, uint64_t n, PyObject *input, Py_ssize_t output_len,
              const unsigned char *b, const frame *f)
{
    unsigned char nonce_bytes[12] = {0};
    Py_ssize_t begin = f->length_start - f->start;
    Py_ssize_t header = f->header_end - f->header_start;
    PyObject *nonce, *ad, *written = NULL;
    for (int i = 0; i < 8; i++) {
        nonce_bytes[little_endian ? 4 + i : 11 - i] = (unsigned char)(n >> (8 * i));
    }
    nonce = PyBytes_FromStringAndSize((const char *)nonce_bytes, 12);
    ad = nonce ? PyBytes_FromStringAndSize(NULL, begin + header) : NULL;
    if (ad != NULL && PyByteArray_Resize(c->output, output_len) == 0) {
        char *p = PyBytes_AS_STRING(ad);
        memcpy(p, b + f->start, (size_t)begin);
        memcpy(p + begin, b + f->header_start, (size_t)header);
        PyObject *args[5] = {NULL, nonce, input, ad, c->output};
        written = PyObject_Vectorcall(c->method, args + 1, 4 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                      NULL);
    }
    Py_XDECREF(nonce);
    Py_XDECREF(ad);
    Py_DECREF(input);
    if (written == NULL) {
        return NULL;
    }
    /* The output must be exactly as long as asked for: the caller reads that many bytes. */
    Py_ssize_t count = PyLong_Check(written) ? PyLong_AsSsize_t(written) : -1;
    Py_DECREF(written);
    if (count != output_len || PyByteArray_GET_SIZE(c->output) != output_len) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_SystemError, "the AEAD wrote an unexpected length");
        }
        return NULL;
    }
    return (unsigned char *)PyByteArray_AS_STRING(c->output);
}

/* -- the runner ----------------------------------------------------------------------------- */

#define MAX_TABLE 4096 /* tags below this can be clear-header tags */

typedef struct {
    PyObject_HEAD
    PyObject *aead;
    aead_call encrypt, decrypt; /* bound on first use: a direction only ever needs one */
    int little_endian;
    int busy;
    Py_ssize_t table_len;
    unsigned char table[MAX_TABLE];
} Runner;

/* The arguments of one call: buf, start, nonce, count, budget, then the size limits. */
typedef struct {
    Py_buffer buf;
    Py_ssize_t start;
    unsigned long long nonce;
    Py_ssize_t count;   /* messages allowed in this run */
    long long budget;   /* body bytes allowed in this run */
    Py_ssize_t max_wire;
    Py_ssize_t max_plain;
} run_args;

static int
ssize_arg(PyObject *o, const char *name, Py_ssize_t *out)
{
    *out = PyLong_AsSsize_t(o);
    if (*out == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (*out < 0) {
        PyErr_Format(PyExc_ValueError, "%s must not be negative", name);
        return -1;
    }
    return 0;
}

/* Parse (buf, start, nonce, count, budget, [max_wire,] max_size); takes the runner. */
static int
begin_run(Runner *self, PyObject *const *args, Py_ssize_t nargs, int with_wire, run_args *a)
{
    Py_ssize_t expected = with_wire ? 7 : 6;
    if (nargs != expected) {
        PyErr_Format(PyExc_TypeError, "expected %zd arguments, got %zd", expected, nargs);
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "this runner is already in use by another call");
        return -1;
    }
    if (ssize_arg(args[1], "start", &a->start) < 0 || ssize_arg(args[3], "count", &a->count) < 0) {
        return -1;
    }
    a->nonce = PyLong_AsUnsignedLongLong(args[2]);
    if (a->nonce == (unsigned long long)-1) { /* an error, or the reserved nonce itself */
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_OverflowError, "nonce out of range");
        }
        return -1;
    }
    a->budget = PyLong_AsLongLong(args[4]);
    if ((a->budget == -1 && PyErr_Occurred()) || a->budget < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "budget must not be negative");
        }
        return -1;
    }
    a->max_wire = 0;
    if ((with_wire && ssize_arg(args[5], "max_wire", &a->max_wire) < 0) ||
        ssize_arg(args[with_wire ? 6 : 5], "max_size", &a->max_plain) < 0) {
        return -1;
    }
    /* The run uses nonces nonce .. nonce + count - 1, all below the reserved 2^64-1. */
    if ((unsigned long long)a->count > UINT64_MAX - a->nonce) {
        PyErr_SetString(PyExc_ValueError, "count would reach the reserved nonce");
        return -1;
    }
    if (PyObject_GetBuffer(args[0], &a->buf, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (a->start > a->buf.len) {
        PyBuffer_Release(&a->buf);
        PyErr_SetString(PyExc_ValueError, "start is outside the buffer");
        return -1;
    }
    self->busy = 1;
    return 0;
}

static void
end_run(Runner *self, run_args *a)
{
    PyBuffer_Release(&a->buf);
    self->busy = 0;
}

/* -- seal run --------------------------------------------------------------------------------- */

/* Make room for `need` more bytes after `used` in the bytes object *out (grown geometrically). */
static int
reserve(PyObject **out, Py_ssize_t used, Py_ssize_t need)
{
    Py_ssize_t size = PyBytes_GET_SIZE(*out);
    if (need <= size - used) {
        return 0;
    }
    while (need > size - used) {
        if (size > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        size *= 2;
    }
    return _PyBytes_Resize(out, size);
}

PyDoc_STRVAR(runner_seal_doc,
"seal(buf, start, nonce, count, budget, max_size)\n"
"--\n\n"
"Protect the run of plaintext FIX messages at buf[start:] (specs/hot-path.md).\n"
"Returns (end, wire, sealed, body_bytes, logout).");

static PyObject *
runner_seal(Runner *self, PyObject *const *args, Py_ssize_t nargs)
{
    run_args a;
    PyObject *out = NULL, *result = NULL;
    Py_ssize_t pos, used = 0, sealed = 0;
    long long body_bytes = 0;
    int logout = 0;

    if (aead_call_init(&self->encrypt, self->aead, str_encrypt_into) < 0 ||
        begin_run(self, args, nargs, 0, &a) < 0) {
        return NULL;
    }
    const unsigned char *b = a.buf.buf;
    Py_ssize_t len = a.buf.len;
    /* Protection adds a third of the body and some 60 bytes: start at 1.5x and grow if needed. */
    out = PyBytes_FromStringAndSize(NULL, (len - a.start) + (len - a.start) / 2 + 256);
    if (out == NULL) {
        goto done;
    }
    pos = a.start;
    while (pos < len && sealed < a.count) {
        frame f;
        PyObject *plain;
        unsigned char *cipher;
        if (parse_prefix(b, len, pos, &f) < 0 || f.end > len || f.end - pos > a.max_plain ||
            !trailer_ok(b, &f) || parse_header(b, f.trailer, self->table, self->table_len, &f) < 0) {
            break;
        }
        Py_ssize_t body = f.trailer - f.header_end;
        if (body > a.budget - body_bytes) {
            break;
        }
        Py_ssize_t sealed_len = body + TAG_BYTES;
        Py_ssize_t text = b64_encoded_len(sealed_len);
        Py_ssize_t begin = f.length_start - f.start;
        Py_ssize_t header = f.header_end - f.header_start;
        Py_ssize_t length = header + digits_of(text) + text + 8; /* "90=" SOH "91=" SOH */
        Py_ssize_t need = begin + 2 + digits_of(length) + 1 + length + TRAILER;
        if (reserve(&out, used, need) < 0) {
            goto done;
        }
        plain = PyBytes_FromStringAndSize((const char *)b + f.header_end, body);
        cipher = plain ? aead_call_run(&self->encrypt, self->little_endian,
                                       a.nonce + (uint64_t)sealed, plain, sealed_len, b, &f)
                       : NULL;
        if (cipher == NULL) {
            goto done; /* never expected: raise, and the session fails closed */
        }
        unsigned char *m = (unsigned char *)PyBytes_AS_STRING(out) + used;
        unsigned char *p = put_head(m, b, &f, length);
        memcpy(p, "90=", 3);
        p += 3;
        p += put_decimal(p, text);
        memcpy(p, "\00191=", 4);
        p += 4;
        b64_encode(cipher, sealed_len, p);
        p += text;
        *p++ = SOH;
        p = put_trailer(m, p);
        if (p - m != need) { /* cannot happen: need is computed from the same lengths */
            PyErr_SetString(PyExc_SystemError, "seal run: message length miscomputed");
            goto done;
        }
        used += need;
        if (f.type_end - f.type_start == 1 && b[f.type_start] == '5') {
            logout = 1;
        }
        body_bytes += body;
        sealed++;
        pos = f.end;
    }
    if (_PyBytes_Resize(&out, used) < 0) {
        goto done;
    }
    result = Py_BuildValue("nOnLO", pos, out, sealed, body_bytes, logout ? Py_True : Py_False);
done:
    Py_XDECREF(out);
    end_run(self, &a);
    return result;
}

/* -- open run --------------------------------------------------------------------------------- */

/* The §8.1 layout after the header: "90=" N SOH "91=" then N bytes up to SOH "10=".
 * Sets *text_start and *text_len. 0 or -1. */
static int
parse_secure_data(const unsigned char *b, const frame *f, Py_ssize_t *text_start,
                  Py_ssize_t *text_len)
{
    Py_ssize_t pos = f->header_end;
    Py_ssize_t limit = f->trailer;
    long long size = 0;
    if (limit - pos < 3 || b[pos] != '9' || b[pos + 1] != '0' || b[pos + 2] != '=') {
        return -1;
    }
    pos = decimal(b, pos + 3, limit, 1, &size);
    if (pos < 0 || limit - pos < 4 || b[pos + 1] != '9' || b[pos + 2] != '1' || b[pos + 3] != '=') {
        return -1;
    }
    pos += 4;
    if (size != (long long)(limit - 1 - pos)) { /* SecureData ends right before SOH "10=" */
        return -1;
    }
    *text_start = pos;
    *text_len = (Py_ssize_t)size;
    return 0;
}

PyDoc_STRVAR(runner_open_doc,
"open(buf, start, nonce, count, budget, max_wire, max_size)\n"
"--\n\n"
"Open the run of transport messages at buf[start:] (specs/hot-path.md).\n"
"Returns (end, plaintext, ends, body_bytes, logout): the rebuilt messages back to back and\n"
"where each of them ends in that plaintext.");

static PyObject *
runner_open(Runner *self, PyObject *const *args, Py_ssize_t nargs)
{
    run_args a;
    PyObject *out = NULL, *ends = NULL, *result = NULL;
    Py_ssize_t pos, used = 0;
    long long body_bytes = 0;
    int logout = 0;

    if (aead_call_init(&self->decrypt, self->aead, str_decrypt_into) < 0 ||
        begin_run(self, args, nargs, 1, &a) < 0) {
        return NULL;
    }
    const unsigned char *b = a.buf.buf;
    Py_ssize_t len = a.buf.len;
    /* A rebuilt message is always shorter than its wire form: the input's size is enough. */
    out = PyBytes_FromStringAndSize(NULL, len - a.start);
    ends = PyList_New(0);
    if (out == NULL || ends == NULL) {
        goto done;
    }
    pos = a.start;
    while (pos < len && PyList_GET_SIZE(ends) < a.count) {
        frame f;
        Py_ssize_t text_start, text_len;
        PyObject *sealed;
        unsigned char *plain;
        if (parse_prefix(b, len, pos, &f) < 0 || f.end - pos > a.max_wire || f.end > len ||
            !trailer_ok(b, &f) ||
            parse_header(b, f.trailer, self->table, self->table_len, &f) < 0 ||
            parse_secure_data(b, &f, &text_start, &text_len) < 0) {
            break;
        }
        Py_ssize_t sealed_len = b64_decoded_len(b + text_start, text_len);
        if (sealed_len < TAG_BYTES || sealed_len - TAG_BYTES > a.budget - body_bytes) {
            break;
        }
        Py_ssize_t begin = f.length_start - f.start;
        Py_ssize_t header = f.header_end - f.header_start;
        Py_ssize_t body = sealed_len - TAG_BYTES;
        Py_ssize_t length = header + body;
        Py_ssize_t size = begin + 2 + digits_of(length) + 1 + length + TRAILER;
        if (size > a.max_plain) {
            break;
        }
        if (size > PyBytes_GET_SIZE(out) - used) { /* cannot happen: size < f.end - pos */
            PyErr_SetString(PyExc_SystemError, "open run: output larger than its input");
            goto done;
        }
        sealed = PyBytes_FromStringAndSize(NULL, sealed_len);
        if (sealed == NULL) {
            goto done;
        }
        if (b64_decode(b + text_start, text_len, (unsigned char *)PyBytes_AS_STRING(sealed)) < 0) {
            Py_DECREF(sealed);
            break;
        }
        plain = aead_call_run(&self->decrypt, self->little_endian,
                              a.nonce + (uint64_t)PyList_GET_SIZE(ends), sealed, body, b, &f);
        if (plain == NULL) {
            if (!PyErr_ExceptionMatches(invalid_tag)) {
                goto done;
            }
            PyErr_Clear(); /* authentication failed: the per-message path fails the session */
            break;
        }
        unsigned char *m = (unsigned char *)PyBytes_AS_STRING(out) + used;
        unsigned char *p = put_head(m, b, &f, length);
        memcpy(p, plain, (size_t)body);
        memset(plain, 0, (size_t)body); /* no plaintext left behind in the scratch buffer */
        p += body;
        put_trailer(m, p);
        used += size;
        PyObject *end = PyLong_FromSsize_t(used);
        if (end == NULL || PyList_Append(ends, end) < 0) {
            Py_XDECREF(end);
            goto done;
        }
        Py_DECREF(end);
        if (f.type_end - f.type_start == 1 && b[f.type_start] == '5') {
            logout = 1;
        }
        body_bytes += body;
        pos = f.end;
    }
    if (_PyBytes_Resize(&out, used) < 0) {
        goto done;
    }
    result = Py_BuildValue("nOOLO", pos, out, ends, body_bytes, logout ? Py_True : Py_False);
done:
    Py_XDECREF(out);
    Py_XDECREF(ends);
    end_run(self, &a);
    return result;
}

/* -- the Runner type ---------------------------------------------------------------------------- */

static int
runner_init(Runner *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"aead", "little_endian", "header_tags", NULL};
    PyObject *aead;
    int little_endian;
    Py_buffer table;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Opy*", keywords, &aead, &little_endian,
                                     &table)) {
        return -1;
    }
    if (table.len > MAX_TABLE) {
        PyBuffer_Release(&table);
        PyErr_Format(PyExc_ValueError, "header_tags has more than %d entries", MAX_TABLE);
        return -1;
    }
    if (self->aead != NULL) {
        PyBuffer_Release(&table);
        PyErr_SetString(PyExc_TypeError, "a Runner is initialised once");
        return -1;
    }
    memcpy(self->table, table.buf, (size_t)table.len);
    self->table_len = table.len;
    PyBuffer_Release(&table);
    Py_INCREF(aead);
    self->aead = aead;
    self->little_endian = little_endian;
    return 0;
}

/* The runner holds Python objects (the AEAD, its bound methods), so it takes part in garbage
 * collection: an AEAD wrapper that refers back to its runner is then still collected. */
static int
runner_traverse(Runner *self, visitproc visit, void *arg)
{
    Py_VISIT(self->aead);
    Py_VISIT(self->encrypt.method);
    Py_VISIT(self->encrypt.output);
    Py_VISIT(self->decrypt.method);
    Py_VISIT(self->decrypt.output);
    return 0;
}

static int
runner_clear(Runner *self)
{
    aead_call_clear(&self->encrypt);
    aead_call_clear(&self->decrypt);
    Py_CLEAR(self->aead);
    return 0;
}

static void
runner_dealloc(Runner *self)
{
    PyObject_GC_UnTrack(self);
    runner_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
runner_repr(Runner *self)
{
    return PyUnicode_FromFormat("<fixsecure._hotpath.Runner %s nonces>",
                                self->little_endian ? "little-endian" : "big-endian");
}

static PyMethodDef runner_methods[] = {
    {"seal", (PyCFunction)(void (*)(void))runner_seal, METH_FASTCALL, runner_seal_doc},
    {"open", (PyCFunction)(void (*)(void))runner_open, METH_FASTCALL, runner_open_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RunnerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fixsecure._hotpath.Runner",
    .tp_doc = PyDoc_STR("Runner(aead, little_endian, header_tags): the seal and open runs of one "
                        "key (specs/hot-path.md)."),
    .tp_basicsize = sizeof(Runner),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)runner_init,
    .tp_dealloc = (destructor)runner_dealloc,
    .tp_traverse = (traverseproc)runner_traverse,
    .tp_clear = (inquiry)runner_clear,
    .tp_repr = (reprfunc)runner_repr,
    .tp_methods = runner_methods,
};

/* -- module ----------------------------------------------------------------------------------- */

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "fixsecure._hotpath",
    "The seal and open runs of specs/hot-path.md in C (no cryptography: AEAD calls go to the "
    "cryptography object passed in).",
    -1,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__hotpath(void)
{
    PyObject *exceptions, *module;
    b64_init();
    str_encrypt_into = PyUnicode_InternFromString("encrypt_into");
    str_decrypt_into = PyUnicode_InternFromString("decrypt_into");
    if (str_encrypt_into == NULL || str_decrypt_into == NULL || PyType_Ready(&RunnerType) < 0) {
        return NULL;
    }
    exceptions = PyImport_ImportModule("cryptography.exceptions");
    if (exceptions == NULL) {
        return NULL;
    }
    invalid_tag = PyObject_GetAttrString(exceptions, "InvalidTag");
    Py_DECREF(exceptions);
    if (invalid_tag == NULL) {
        return NULL;
    }
    module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&RunnerType);
    if (PyModule_AddObject(module, "Runner", (PyObject *)&RunnerType) < 0) {
        Py_DECREF(&RunnerType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
