/*
 * dbward.masking._native: the per-row part of result masking, in C.
 *
 * A Kernel is made once per result from its ResultPlan (see rows.py). It walks
 * DataRow payloads, applies the common whole-value masks itself (a constant,
 * an email's domain, a number's last digits, a person's keyed pseudonym) and
 * hands every other value to the Python callable the plan gave for it. A text
 * column that is scanned for PII goes to Python only when maybe_pii() cannot
 * rule PII out: maybe_pii is a cheap test that every exact detector pattern in
 * detectors.py needs to pass (tests/unit/masking/test_native.py checks that it
 * never says no where the scanner finds something).
 *
 * Results are identical to the pure-Python RowMasker's; the tests run both.
 * value() masks one value (COPY's rows are split in Python).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

enum Mode {
    MODE_CONST = 1,    /* arg: bytes, or None for SQL NULL */
    MODE_EMAIL = 2,    /* "****@" + domain; arg: bytes when there is no '@' */
    MODE_LAST = 3,     /* letters and digits but the last `keep` become '*' */
    MODE_NAME = 4,     /* "Person " + HMAC hex; arg: message prefix, extra: fallback */
    MODE_CALL = 5,     /* arg(value) -> bytes | None (NULL) */
    MODE_SCAN = 6,     /* arg(value) -> bytes | None (unchanged), if maybe_pii */
    MODE_SCAN_ALL = 7, /* arg(value) -> bytes | None (unchanged), always */
};

typedef struct {
    Py_ssize_t index;
    int mode;
    PyObject *arg;
    PyObject *extra;
    Py_ssize_t keep;
    Py_ssize_t count; /* values masked whole since the last counts() */
} Column;

typedef struct {
    PyObject_HEAD
    Column *columns;
    Py_ssize_t ncolumns;
    Column **by_index; /* result column index -> its Column, or NULL */
    Py_ssize_t width;  /* 1 + the highest index with a Column */
    SHA256_CTX inner;  /* HMAC states after the padded key */
    SHA256_CTX outer;
    PyObject *unchanged; /* what value() returns for a value it leaves as it is */
    char *buf;           /* the output being built; reused between calls */
    Py_ssize_t len;
    Py_ssize_t cap;
} Kernel;

/* ---------------------------------------------------------------- buffer */

static int reserve(Kernel *k, Py_ssize_t more)
{
    if (k->len + more <= k->cap)
        return 0;
    Py_ssize_t cap = k->cap ? k->cap : 4096;
    while (cap < k->len + more)
        cap *= 2;
    char *grown = PyMem_Realloc(k->buf, (size_t)cap);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    k->buf = grown;
    k->cap = cap;
    return 0;
}

static int append(Kernel *k, const void *data, Py_ssize_t n)
{
    if (reserve(k, n) < 0)
        return -1;
    memcpy(k->buf + k->len, data, (size_t)n);
    k->len += n;
    return 0;
}

static void put_int32(char *at, int32_t value)
{
    uint32_t v = (uint32_t)value;
    at[0] = (char)(v >> 24);
    at[1] = (char)(v >> 16);
    at[2] = (char)(v >> 8);
    at[3] = (char)v;
}

static int32_t get_int32(const unsigned char *at)
{
    return (int32_t)(((uint32_t)at[0] << 24) | ((uint32_t)at[1] << 16) | ((uint32_t)at[2] << 8) |
                     (uint32_t)at[3]);
}

/* ------------------------------------------------------------ maybe_pii */

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_upper(unsigned char c) { return c >= 'A' && c <= 'Z'; }
static int is_lower(unsigned char c) { return c >= 'a' && c <= 'z'; }
static int is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
/* The characters a phone number, card, SSN, national number or IPv4 address is
   written with: a run of seven or more of them, four of them digits, is needed by
   every digit-based detector. */
static int is_numberish(unsigned char c)
{
    return is_digit(c) || c == ' ' || c == '(' || c == ')' || c == '.' || c == '+' || c == '-';
}

static int starts(const unsigned char *s, Py_ssize_t n, Py_ssize_t i, const char *word)
{
    size_t w = strlen(word);
    return (Py_ssize_t)w <= n - i && memcmp(s + i, word, w) == 0;
}

static int starts_nocase(const unsigned char *s, Py_ssize_t n, Py_ssize_t i, const char *word)
{
    size_t w = strlen(word);
    if ((Py_ssize_t)w > n - i)
        return 0;
    for (size_t j = 0; j < w; j++) {
        unsigned char c = s[i + j];
        if (is_upper(c))
            c = (unsigned char)(c + 32);
        if (c != (unsigned char)word[j])
            return 0;
    }
    return 1;
}

/* 0 when no detector can match anything in s; 1 when one might. */
static int maybe_pii(const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t run = 0, run_digits = 0, caps = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (is_numberish(c)) {
            run++;
            run_digits += is_digit(c);
            if (run >= 7 && run_digits >= 4)
                return 1;
        } else {
            run = run_digits = 0;
        }
        if (is_upper(c) || is_digit(c)) {
            if (++caps >= 20) /* an AWS access key id */
                return 1;
        } else {
            caps = 0;
        }
        switch (c) {
        case '@':
            return 1;
        case ':': { /* IPv6: two colons with at most four hex digits between */
            Py_ssize_t j = i + 1;
            while (j < n && j - i <= 4 && is_hex(s[j]))
                j++;
            if (j < n && s[j] == ':')
                return 1;
            break;
        }
        case '-':
            if (starts(s, n, i, "-----BEGIN"))
                return 1;
            break;
        case 'e':
            if (starts(s, n, i, "eyJ"))
                return 1;
            break;
        case 'g':
            if (i + 3 < n && s[i + 1] == 'h' && strchr("pousr", s[i + 2]) && s[i + 2] &&
                s[i + 3] == '_')
                return 1;
            if (starts(s, n, i, "github_pat_"))
                return 1;
            if (i + 1 < n && s[i + 1] == 'l') { /* glpat-, glcbt-, ... */
                Py_ssize_t j = i + 2;
                while (j < n && j - i <= 6 && is_lower(s[j]))
                    j++;
                if (j < n && s[j] == '-' && j - i >= 4)
                    return 1;
            }
            break;
        case 'x':
            if (starts(s, n, i, "xox"))
                return 1;
            break;
        case 'h':
            if (starts(s, n, i, "hooks.slack.com"))
                return 1;
            break;
        case '_':
            if (starts(s, n, i, "_live_") || starts(s, n, i, "_test_"))
                return 1;
            break;
        case 'w':
            if (starts(s, n, i, "whsec_"))
                return 1;
            break;
        case 'a':
        case 'A':
            if (starts_nocase(s, n, i, "aws"))
                return 1;
            break;
        case 's':
        case 'S':
            if (starts_nocase(s, n, i, "secret"))
                return 1;
            break;
        default:
            break;
        }
        /* An IBAN, a compact UK NINO, an Italian codice fiscale: two capitals, two digits. */
        if (is_upper(c) && i + 3 < n && is_upper(s[i + 1]) && is_digit(s[i + 2]) &&
            is_digit(s[i + 3]))
            return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ text helpers */

/* As Python's strict UTF-8 decoder: no overlong forms, surrogates or code points
   past U+10FFFF. */
static int utf8_valid(const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
        } else if (c >= 0xC2 && c <= 0xDF) {
            if (n - i < 2 || (s[i + 1] & 0xC0) != 0x80)
                return 0;
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (n - i < 3 || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80)
                return 0;
            if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] >= 0xA0))
                return 0;
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (n - i < 4 || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 ||
                (s[i + 3] & 0xC0) != 0x80)
                return 0;
            if ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] >= 0x90))
                return 0;
            i += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

/* What str.isspace() is true for, as UTF-8 (tests compare it with Python's). */
static const char *const SPACES[] = {
    "\t", "\n", "\x0b", "\x0c", "\r", "\x1c", "\x1d", "\x1e", "\x1f", " ",
    "\xc2\x85", "\xc2\xa0", "\xe1\x9a\x80", "\xe2\x80\x80", "\xe2\x80\x81", "\xe2\x80\x82",
    "\xe2\x80\x83", "\xe2\x80\x84", "\xe2\x80\x85", "\xe2\x80\x86", "\xe2\x80\x87",
    "\xe2\x80\x88", "\xe2\x80\x89", "\xe2\x80\x8a", "\xe2\x80\xa8", "\xe2\x80\xa9",
    "\xe2\x80\xaf", "\xe2\x81\x9f", "\xe3\x80\x80", NULL,
};

/* The byte length of the whitespace character at the start (or end) of s, or 0. */
static Py_ssize_t space_at(const unsigned char *s, Py_ssize_t n, int at_end)
{
    for (const char *const *space = SPACES; *space; space++) {
        Py_ssize_t w = (Py_ssize_t)strlen(*space);
        if (w <= n && memcmp(at_end ? s + n - w : s, *space, (size_t)w) == 0)
            return w;
    }
    return 0;
}

static const char HEX[] = "0123456789ABCDEF";

/* ------------------------------------------------------------ one value */

enum Outcome { UNCHANGED = 0, WRITTEN = 1, IS_NULL = 2, FAILED = -1 };

/* Append a callable's answer: bytes are written; None is `none_means`. */
static int take_result(Kernel *k, PyObject *result, int none_means)
{
    if (result == NULL)
        return FAILED;
    int outcome;
    if (result == Py_None) {
        outcome = none_means;
    } else if (PyBytes_Check(result)) {
        outcome = append(k, PyBytes_AS_STRING(result), PyBytes_GET_SIZE(result)) < 0 ? FAILED
                                                                                     : WRITTEN;
    } else {
        PyErr_Format(PyExc_TypeError, "a masking function returned %.100s, not bytes",
                     Py_TYPE(result)->tp_name);
        outcome = FAILED;
    }
    Py_DECREF(result);
    return outcome;
}

static int call(Kernel *k, PyObject *fn, const unsigned char *v, Py_ssize_t n, int none_means)
{
    PyObject *value = PyBytes_FromStringAndSize((const char *)v, n);
    if (value == NULL)
        return FAILED;
    PyObject *result = PyObject_CallOneArg(fn, value);
    Py_DECREF(value);
    return take_result(k, result, none_means);
}

static int mask_name(Kernel *k, Column *c, const unsigned char *v, Py_ssize_t n)
{
    if (!utf8_valid(v, n))
        return call(k, c->extra, v, n, IS_NULL);
    Py_ssize_t w;
    while (n > 0 && (w = space_at(v, n, 0)) > 0) {
        v += w;
        n -= w;
    }
    while (n > 0 && (w = space_at(v, n, 1)) > 0)
        n -= w;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256_CTX ctx = k->inner;
    SHA256_Update(&ctx, PyBytes_AS_STRING(c->arg), (size_t)PyBytes_GET_SIZE(c->arg));
    SHA256_Update(&ctx, v, (size_t)n);
    SHA256_Final(digest, &ctx);
    ctx = k->outer;
    SHA256_Update(&ctx, digest, sizeof digest);
    SHA256_Final(digest, &ctx);
    char out[15] = "Person ";
    for (int i = 0; i < 4; i++) {
        out[7 + 2 * i] = HEX[digest[i] >> 4];
        out[8 + 2 * i] = HEX[digest[i] & 15];
    }
    return append(k, out, sizeof out) < 0 ? FAILED : WRITTEN;
}

static int mask_last(Kernel *k, Py_ssize_t keep, const unsigned char *v, Py_ssize_t n)
{
    Py_ssize_t cut = n, kept = 0;
    while (cut > 0 && kept < keep) {
        cut--;
        unsigned char c = v[cut];
        if (is_digit(c) || is_upper(c) || is_lower(c))
            kept++;
    }
    if (reserve(k, n) < 0)
        return FAILED;
    char *out = k->buf + k->len;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = v[i];
        out[i] = (char)(i < cut && (is_digit(c) || is_upper(c) || is_lower(c)) ? '*' : c);
    }
    k->len += n;
    return WRITTEN;
}

/* Write the masked form of value v of column c. */
static int mask_value(Kernel *k, Column *c, const unsigned char *v, Py_ssize_t n)
{
    switch (c->mode) {
    case MODE_CONST:
        c->count++;
        if (c->arg == Py_None)
            return IS_NULL;
        return append(k, PyBytes_AS_STRING(c->arg), PyBytes_GET_SIZE(c->arg)) < 0 ? FAILED
                                                                                  : WRITTEN;
    case MODE_EMAIL: {
        c->count++;
        const unsigned char *at = NULL;
        for (Py_ssize_t i = n - 1; i >= 0; i--) {
            if (v[i] == '@') {
                at = v + i;
                break;
            }
        }
        if (at == NULL)
            return append(k, PyBytes_AS_STRING(c->arg), PyBytes_GET_SIZE(c->arg)) < 0 ? FAILED
                                                                                      : WRITTEN;
        if (append(k, "****@", 5) < 0)
            return FAILED;
        return append(k, at + 1, n - (at + 1 - v)) < 0 ? FAILED : WRITTEN;
    }
    case MODE_LAST:
        c->count++;
        return mask_last(k, c->keep, v, n);
    case MODE_NAME:
        c->count++;
        return mask_name(k, c, v, n);
    case MODE_CALL:
        c->count++;
        return call(k, c->arg, v, n, IS_NULL);
    case MODE_SCAN:
        if (!maybe_pii(v, n))
            return UNCHANGED;
        return call(k, c->arg, v, n, UNCHANGED);
    case MODE_SCAN_ALL:
        return call(k, c->arg, v, n, UNCHANGED);
    default:
        PyErr_Format(PyExc_ValueError, "unknown masking mode %d", c->mode);
        return FAILED;
    }
}

/* ------------------------------------------------------------ one row */

static int malformed(const char *what)
{
    PyErr_Format(PyExc_ValueError, "malformed DataRow: %s", what);
    return -1;
}

/* Append a tuple (int16 count, then int32 length and bytes per field) from p[0:n],
   masked. With `whole`, all `count` fields are read and *used says where the tuple
   ends (a COPY binary tuple); without, only the fields up to the last masked column
   are read and the rest of p is copied (a DataRow). 1 if a value changed, 0 if not,
   -1 on error. */
static int mask_tuple(Kernel *k, const unsigned char *p, Py_ssize_t n, int whole,
                      Py_ssize_t *used)
{
    if (n < 2)
        return malformed("no column count");
    Py_ssize_t count = (Py_ssize_t)(int16_t)(((unsigned)p[0] << 8) | p[1]);
    Py_ssize_t last = whole || count < k->width ? count : k->width;
    Py_ssize_t pos = 2, copied = 0;
    int changed = 0;
    for (Py_ssize_t i = 0; i < last; i++) {
        if (n - pos < 4)
            return malformed("a column runs past the message");
        int32_t length = get_int32(p + pos);
        Py_ssize_t start = pos + 4;
        Py_ssize_t end = start + (length > 0 ? length : 0);
        if (end > n)
            return malformed("a value runs past the message");
        Column *c = i < k->width ? k->by_index[i] : NULL;
        pos = end;
        if (c == NULL || length < 0)
            continue;
        Py_ssize_t mark = k->len;
        if (append(k, p + copied, start - 4 - copied) < 0 || reserve(k, 4) < 0)
            return -1;
        Py_ssize_t at = k->len;
        k->len += 4;
        int outcome = mask_value(k, c, p + start, length);
        if (outcome == FAILED)
            return -1;
        if (outcome == UNCHANGED) {
            k->len = mark;
            continue;
        }
        put_int32(k->buf + at, outcome == IS_NULL ? -1 : (int32_t)(k->len - at - 4));
        copied = end;
        changed = 1;
    }
    Py_ssize_t stop = whole ? pos : n;
    if (append(k, p + copied, stop - copied) < 0)
        return -1;
    if (used != NULL)
        *used = stop;
    return changed;
}

static int mask_row(Kernel *k, const unsigned char *p, Py_ssize_t n)
{
    return mask_tuple(k, p, n, 0, NULL);
}

/* ------------------------------------------------------------ COPY */

static const unsigned char COPY_SIGNATURE[11] = "PGCOPY\n\xff\r\n";

/* Append COPY binary data (an optional header, tuples, an optional trailer), masked. */
static int mask_copy_binary(Kernel *k, const unsigned char *p, Py_ssize_t n)
{
    Py_ssize_t pos = 0;
    int changed = 0;
    if (n >= 19 && memcmp(p, COPY_SIGNATURE, 11) == 0) {
        int32_t extension = get_int32(p + 15);
        if (extension < 0 || 19 + (Py_ssize_t)extension > n)
            return malformed("COPY header extension runs past the message");
        pos = 19 + extension;
        if (append(k, p, pos) < 0)
            return -1;
    }
    while (n - pos >= 2) {
        if (p[pos] & 0x80) /* a negative count: the trailer */
            break;
        Py_ssize_t used;
        int row = mask_tuple(k, p + pos, n - pos, 1, &used);
        if (row < 0)
            return -1;
        changed |= row;
        pos += used;
    }
    if (append(k, p + pos, n - pos) < 0)
        return -1;
    return changed;
}

/* Append one COPY text line (no line break), masked: fields split at unescaped
   delimiters, `null` for NULL. Whole-value fields with a backslash go to the column's
   Python fallback (it unescapes and escapes); what C writes needs no escaping. */
static int mask_copy_text(Kernel *k, const unsigned char *p, Py_ssize_t n, unsigned char delimiter,
                          const unsigned char *null, Py_ssize_t null_len)
{
    Py_ssize_t start = 0, copied = 0, index = 0;
    int changed = 0;
    while (start <= n && index < k->width) {
        Py_ssize_t end = start, backslash = 0;
        while (end < n && p[end] != delimiter) {
            if (p[end] == '\\') {
                backslash = 1;
                end++;
            }
            end++;
        }
        if (end > n)
            end = n;
        Column *c = k->by_index[index];
        Py_ssize_t length = end - start;
        if (c != NULL && !(length == null_len && memcmp(p + start, null, (size_t)null_len) == 0)) {
            Py_ssize_t mark = k->len;
            if (append(k, p + copied, start - copied) < 0)
                return -1;
            int outcome;
            if (backslash && c->extra != Py_None && c->mode != MODE_CALL && c->mode < MODE_SCAN) {
                c->count++;
                outcome = call(k, c->extra, p + start, length, IS_NULL);
            } else {
                outcome = mask_value(k, c, p + start, length);
            }
            if (outcome == FAILED)
                return -1;
            if (outcome == UNCHANGED) {
                k->len = mark;
            } else {
                if (outcome == IS_NULL && append(k, null, null_len) < 0)
                    return -1;
                copied = end;
                changed = 1;
            }
        }
        start = end + 1;
        index++;
    }
    if (append(k, p + copied, n - copied) < 0)
        return -1;
    return changed;
}

/* ------------------------------------------------------------ the type */

static int parse_column(Column *c, PyObject *spec)
{
    PyObject *arg, *extra;
    if (!PyArg_ParseTuple(spec, "niOO", &c->index, &c->mode, &arg, &extra))
        return -1;
    if (c->index < 0 || c->index > 32767) { /* a result's columns are counted in an int16 */
        PyErr_SetString(PyExc_ValueError, "column index out of range");
        return -1;
    }
    int ok;
    switch (c->mode) {
    case MODE_CONST:
        ok = arg == Py_None || PyBytes_Check(arg);
        break;
    case MODE_EMAIL:
        ok = PyBytes_Check(arg);
        break;
    case MODE_LAST:
        c->keep = PyLong_AsSsize_t(arg);
        if (c->keep == -1 && PyErr_Occurred())
            return -1;
        ok = c->keep >= 0;
        break;
    case MODE_NAME:
        ok = PyBytes_Check(arg) && PyCallable_Check(extra);
        break;
    case MODE_CALL:
    case MODE_SCAN:
    case MODE_SCAN_ALL:
        ok = PyCallable_Check(arg);
        break;
    default:
        ok = 0;
    }
    if (!ok) {
        PyErr_Format(PyExc_ValueError, "bad argument for masking mode %d", c->mode);
        return -1;
    }
    Py_INCREF(arg);
    Py_INCREF(extra);
    c->arg = arg;
    c->extra = extra;
    return 0;
}

static int set_key(Kernel *k, const unsigned char *key, Py_ssize_t n)
{
    unsigned char block[SHA256_CBLOCK] = {0};
    if (n > SHA256_CBLOCK) {
        SHA256(key, (size_t)n, block);
    } else {
        memcpy(block, key, (size_t)n);
    }
    unsigned char pad[SHA256_CBLOCK];
    for (int i = 0; i < SHA256_CBLOCK; i++)
        pad[i] = block[i] ^ 0x36;
    SHA256_Init(&k->inner);
    SHA256_Update(&k->inner, pad, sizeof pad);
    for (int i = 0; i < SHA256_CBLOCK; i++)
        pad[i] = block[i] ^ 0x5c;
    SHA256_Init(&k->outer);
    SHA256_Update(&k->outer, pad, sizeof pad);
    return 0;
}

static void Kernel_clear_columns(Kernel *k)
{
    Py_CLEAR(k->unchanged);
    for (Py_ssize_t i = 0; i < k->ncolumns; i++) {
        Py_CLEAR(k->columns[i].arg);
        Py_CLEAR(k->columns[i].extra);
    }
}

static int Kernel_init(Kernel *k, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"columns", "key", "unchanged", NULL};
    PyObject *specs, *unchanged = Py_None;
    Py_buffer key;
    if (k->columns != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Kernel is initialized once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Oy*|O", names, &specs, &key, &unchanged))
        return -1;
    k->unchanged = Py_NewRef(unchanged);
    set_key(k, key.buf, key.len);
    PyBuffer_Release(&key);
    PyObject *seq = PySequence_Fast(specs, "columns must be a sequence");
    if (seq == NULL)
        return -1;
    Py_ssize_t ncolumns = PySequence_Fast_GET_SIZE(seq);
    k->columns = PyMem_Calloc((size_t)(ncolumns ? ncolumns : 1), sizeof(Column));
    if (k->columns == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < ncolumns; i++) {
        if (parse_column(&k->columns[i], PySequence_Fast_GET_ITEM(seq, i)) < 0) {
            k->ncolumns = i;
            Py_DECREF(seq);
            return -1;
        }
        k->ncolumns = i + 1;
        if (k->columns[i].index + 1 > k->width)
            k->width = k->columns[i].index + 1;
    }
    Py_DECREF(seq);
    k->by_index = PyMem_Calloc((size_t)(k->width ? k->width : 1), sizeof(Column *));
    if (k->by_index == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < k->ncolumns; i++)
        k->by_index[k->columns[i].index] = &k->columns[i];
    return 0;
}

static void Kernel_dealloc(Kernel *k)
{
    PyObject_GC_UnTrack(k);
    Kernel_clear_columns(k);
    PyMem_Free(k->columns);
    PyMem_Free(k->by_index);
    PyMem_Free(k->buf);
    Py_TYPE(k)->tp_free((PyObject *)k);
}

static int Kernel_traverse(Kernel *k, visitproc visit, void *arg)
{
    Py_VISIT(k->unchanged);
    for (Py_ssize_t i = 0; i < k->ncolumns; i++) {
        Py_VISIT(k->columns[i].arg);
        Py_VISIT(k->columns[i].extra);
    }
    return 0;
}

static int Kernel_tp_clear(Kernel *k)
{
    Kernel_clear_columns(k);
    return 0;
}

static PyObject *Kernel_row(Kernel *k, PyObject *args)
{
    Py_buffer data;
    Py_ssize_t start, end;
    if (!PyArg_ParseTuple(args, "y*nn", &data, &start, &end))
        return NULL;
    PyObject *out = NULL;
    if (start < 0 || end < start || end > data.len) {
        PyErr_SetString(PyExc_ValueError, "row bounds outside the buffer");
        goto done;
    }
    k->len = 0;
    int changed = mask_row(k, (const unsigned char *)data.buf + start, end - start);
    if (changed < 0)
        goto done;
    if (changed)
        out = PyBytes_FromStringAndSize(k->buf, k->len);
    else
        out = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&data);
    return out;
}

/* How a run of CopyData is masked: its delimiter (-1: binary) and NULL string. */
typedef struct {
    int delimiter;
    const unsigned char *null;
    Py_ssize_t null_len;
} CopyFormat;

/* Append one CopyData payload p[0:n], masked: a text line (its line break kept) or
   binary data. */
static int mask_copy_data(Kernel *k, const unsigned char *p, Py_ssize_t n, const CopyFormat *f)
{
    if (f->delimiter < 0)
        return mask_copy_binary(k, p, n);
    Py_ssize_t body = n;
    if (body > 0 && p[body - 1] == '\n')
        body--;
    if (body > 0 && p[body - 1] == '\r')
        body--;
    int row = mask_copy_text(k, p, body, (unsigned char)f->delimiter, f->null, f->null_len);
    if (row >= 0 && append(k, p + body, n - body) < 0)
        return -1;
    return row;
}

/* The messages of type `kind` from frames[index] on, masked (DataRows, or CopyData
   as `copy` says), as (next, whole messages or None if none changed). */
static PyObject *mask_frames(Kernel *k, Py_buffer *data, PyObject *frames, Py_ssize_t index,
                             long kind, const CopyFormat *copy)
{
    Py_ssize_t total = PyList_GET_SIZE(frames), next = index;
    int changed = 0;
    k->len = 0;
    const unsigned char *base = data->buf;
    for (; next < total; next++) {
        PyObject *frame = PyList_GET_ITEM(frames, next);
        if (!PyTuple_Check(frame) || PyTuple_GET_SIZE(frame) != 3) {
            PyErr_SetString(PyExc_TypeError, "frames must be (kind, start, end) tuples");
            return NULL;
        }
        if (PyLong_AsLong(PyTuple_GET_ITEM(frame, 0)) != kind)
            break;
        Py_ssize_t start = PyLong_AsSsize_t(PyTuple_GET_ITEM(frame, 1));
        Py_ssize_t end = PyLong_AsSsize_t(PyTuple_GET_ITEM(frame, 2));
        if (PyErr_Occurred())
            return NULL;
        if (start < 5 || end < start || end > data->len) {
            PyErr_SetString(PyExc_ValueError, "frame bounds outside the buffer");
            return NULL;
        }
        if (append(k, base + start - 5, 1) < 0 || reserve(k, 4) < 0)
            return NULL;
        Py_ssize_t at = k->len;
        k->len += 4;
        const unsigned char *p = base + start;
        int row = copy == NULL ? mask_row(k, p, end - start) : mask_copy_data(k, p, end - start, copy);
        if (row < 0)
            return NULL;
        changed |= row;
        put_int32(k->buf + at, (int32_t)(k->len - at));
    }
    if (changed)
        return Py_BuildValue("ny#", next, k->buf, k->len);
    return Py_BuildValue("nO", next, Py_None);
}

static PyObject *Kernel_run(Kernel *k, PyObject *args)
{
    Py_buffer data;
    PyObject *frames;
    Py_ssize_t index;
    if (!PyArg_ParseTuple(args, "y*O!n", &data, &PyList_Type, &frames, &index))
        return NULL;
    PyObject *out = mask_frames(k, &data, frames, index, 'D', NULL);
    PyBuffer_Release(&data);
    return out;
}

static PyObject *Kernel_value(Kernel *k, PyObject *args)
{
    Py_ssize_t slot;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "ny*", &slot, &data))
        return NULL;
    PyObject *out = NULL;
    if (slot < 0 || slot >= k->ncolumns) {
        PyErr_SetString(PyExc_IndexError, "no such column in this kernel");
        goto done;
    }
    k->len = 0;
    switch (mask_value(k, &k->columns[slot], data.buf, data.len)) {
    case WRITTEN:
        out = PyBytes_FromStringAndSize(k->buf, k->len);
        break;
    case IS_NULL:
        out = Py_NewRef(Py_None);
        break;
    case UNCHANGED:
        out = Py_NewRef(k->unchanged);
        break;
    default:
        break;
    }
done:
    PyBuffer_Release(&data);
    return out;
}

static PyObject *Kernel_copy(Kernel *k, PyObject *args)
{
    Py_buffer data, null;
    Py_ssize_t start, end;
    int delimiter;
    if (!PyArg_ParseTuple(args, "y*nniy*", &data, &start, &end, &delimiter, &null))
        return NULL;
    PyObject *out = NULL;
    if (start < 0 || end < start || end > data.len) {
        PyErr_SetString(PyExc_ValueError, "COPY data bounds outside the buffer");
        goto done;
    }
    k->len = 0;
    const unsigned char *p = (const unsigned char *)data.buf + start;
    int changed = delimiter < 0 ? mask_copy_binary(k, p, end - start)
                                : mask_copy_text(k, p, end - start, (unsigned char)delimiter,
                                                 null.buf, null.len);
    if (changed < 0)
        goto done;
    out = changed ? PyBytes_FromStringAndSize(k->buf, k->len) : Py_NewRef(Py_None);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&null);
    return out;
}

static PyObject *Kernel_copy_run(Kernel *k, PyObject *args)
{
    Py_buffer data, null;
    PyObject *frames;
    Py_ssize_t index;
    int delimiter;
    if (!PyArg_ParseTuple(args, "y*O!niy*", &data, &PyList_Type, &frames, &index, &delimiter,
                          &null))
        return NULL;
    CopyFormat format = {delimiter, null.buf, null.len};
    PyObject *out = mask_frames(k, &data, frames, index, 'd', &format);
    PyBuffer_Release(&data);
    PyBuffer_Release(&null);
    return out;
}

static PyObject *Kernel_counts(Kernel *k, PyObject *unused)
{
    PyObject *counts = PyList_New(k->ncolumns);
    if (counts == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < k->ncolumns; i++) {
        PyObject *count = PyLong_FromSsize_t(k->columns[i].count);
        if (count == NULL) {
            Py_DECREF(counts);
            return NULL;
        }
        PyList_SET_ITEM(counts, i, count);
        k->columns[i].count = 0;
    }
    return counts;
}

static PyMethodDef Kernel_methods[] = {
    {"row", (PyCFunction)Kernel_row, METH_VARARGS,
     "row(data, start, end) -> bytes | None: the DataRow payload data[start:end] masked, "
     "or None if no value changed."},
    {"run", (PyCFunction)Kernel_run, METH_VARARGS,
     "run(block, frames, index) -> (next, bytes | None): the DataRow messages "
     "frames[index:next] of block, masked, as whole messages (None if none changed)."},
    {"value", (PyCFunction)Kernel_value, METH_VARARGS,
     "value(slot, data) -> bytes | None | unchanged: one value of the column the kernel was "
     "given at position slot, masked (None for NULL; `unchanged` if it stays as it is)."},
    {"copy", (PyCFunction)Kernel_copy, METH_VARARGS,
     "copy(data, start, end, delimiter, null) -> bytes | None: COPY data[start:end] masked "
     "(None if unchanged): one text line without its line break, fields split at the "
     "delimiter byte, or, with delimiter -1, binary COPY data."},
    {"copy_run", (PyCFunction)Kernel_copy_run, METH_VARARGS,
     "copy_run(block, frames, index, delimiter, null) -> (next, bytes | None): the CopyData "
     "messages frames[index:next] of block masked, as copy() does each, as whole messages."},
    {"counts", (PyCFunction)Kernel_counts, METH_NOARGS,
     "counts() -> list[int]: values masked whole per column since the last call."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject KernelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dbward.masking._native.Kernel",
    .tp_basicsize = sizeof(Kernel),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Kernel(columns, key): masks the DataRows of one result.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Kernel_init,
    .tp_dealloc = (destructor)Kernel_dealloc,
    .tp_traverse = (traverseproc)Kernel_traverse,
    .tp_clear = (inquiry)Kernel_tp_clear,
    .tp_methods = Kernel_methods,
};

/* ------------------------------------------------------------ module */

static PyObject *py_maybe_pii(PyObject *module, PyObject *arg)
{
    Py_buffer data;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0)
        return NULL;
    int maybe = maybe_pii(data.buf, data.len);
    PyBuffer_Release(&data);
    return PyBool_FromLong(maybe);
}

static PyObject *py_spaces(PyObject *module, PyObject *unused)
{
    PyObject *spaces = PyList_New(0);
    for (const char *const *space = SPACES; spaces && *space; space++) {
        PyObject *item = PyBytes_FromString(*space);
        if (item == NULL || PyList_Append(spaces, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(spaces);
            break;
        }
        Py_DECREF(item);
    }
    return spaces;
}

static PyMethodDef module_methods[] = {
    {"maybe_pii", py_maybe_pii, METH_O,
     "maybe_pii(data) -> bool: False only if no detector can match anything in data."},
    {"spaces", py_spaces, METH_NOARGS,
     "spaces() -> list[bytes]: the whitespace a pseudonym's input is stripped of."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "dbward.masking._native",
    .m_doc = "The per-row part of result masking, in C (see rows.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__native(void)
{
    if (PyType_Ready(&KernelType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "Kernel", (PyObject *)&KernelType) < 0 ||
        PyModule_AddIntConstant(module, "CONST", MODE_CONST) < 0 ||
        PyModule_AddIntConstant(module, "EMAIL", MODE_EMAIL) < 0 ||
        PyModule_AddIntConstant(module, "LAST", MODE_LAST) < 0 ||
        PyModule_AddIntConstant(module, "NAME", MODE_NAME) < 0 ||
        PyModule_AddIntConstant(module, "CALL", MODE_CALL) < 0 ||
        PyModule_AddIntConstant(module, "SCAN", MODE_SCAN) < 0 ||
        PyModule_AddIntConstant(module, "SCAN_ALL", MODE_SCAN_ALL) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
