/*
 * config_tree - YAML (libyaml event API) -> ccgw_config node tree with
 * file:line:col, !env / !file secrets, the diagnostics list, and the public
 * getters of <ccgw/config.h>.
 *
 * Private extensions. config_tree.h fixes the public layout of nodes and
 * documents, but validation also needs the position of every mapping *key*
 * (an unknown or duplicate key is reported where the key is written) and a
 * mark on nodes whose problem was already reported (an unset !env variable
 * should not also be reported as "no value"). Every node and document is
 * allocated here, so each is the first member of a larger private struct
 * (node_impl_t, doc_impl_t) holding those extras. The ccgw_config__*()
 * functions below expose them to config_schema.c and config.c, which
 * redeclare them (see the "internal API" block there); they belong in
 * config_tree.h. Consequence: never create a struct ccgw_config or
 * ccgw_config_doc yourself, always through ccgw_config_node_new() /
 * ccgw_config_doc_new().
 *
 * Limits (so that no input can make us crash or eat the machine):
 * input <= 8 MiB, nesting <= 64 levels, <= 262144 nodes, !file <= 1 MiB,
 * <= 1000 diagnostics per document (then one "too many errors" line).
 */
#include "config_tree.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define CFG_MAX_INPUT (8u * 1024u * 1024u)
#define CFG_MAX_DEPTH 64
#define CFG_MAX_NODES 262144u
#define CFG_MAX_SECRET_FILE (1024u * 1024u)
#define CFG_MAX_DIAGS 1000u

typedef struct node_impl {
    struct ccgw_config pub; /* first: a node_impl_t * is a struct ccgw_config * */
    unsigned *key_lines;    /* MAP: position of keys[i] (parallel to keys, same cap) */
    unsigned *key_cols;
    bool reported; /* a problem with this node was already reported: validate no further */
} node_impl_t;

typedef struct doc_impl {
    struct ccgw_config_doc pub; /* first */
    char *dir;                  /* folder of the YAML file, for !file and relative paths */
    bool diags_truncated;
} doc_impl_t;

/* internal API (used by config_schema.c and config.c; belongs in config_tree.h) */
void ccgw_config__diag_at(ccgw_config_doc_t *doc, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void ccgw_config__key_pos(const struct ccgw_config *map, size_t i, unsigned *line, unsigned *col);
int ccgw_config__map_add_at(struct ccgw_config *map, const char *key, unsigned line, unsigned col,
                            struct ccgw_config *child);
bool ccgw_config__reported(const struct ccgw_config *node);
void ccgw_config__set_reported(struct ccgw_config *node);
const char *ccgw_config__dir(const ccgw_config_doc_t *doc);
int ccgw_config__make_empty(struct ccgw_config *node, ccgw_node_kind_t kind);

/* One lock for every document's diagnostics list: plugins' check() may call
 * ccgw_config_error() from instance threads. Getters only read. */
static pthread_mutex_t diag_lock = PTHREAD_MUTEX_INITIALIZER;

static node_impl_t *impl(const struct ccgw_config *n) { return (node_impl_t *)(uintptr_t)n; }
static doc_impl_t *dimpl(const ccgw_config_doc_t *d) { return (doc_impl_t *)(uintptr_t)d; }

/* ------------------------------------------------------------------ */
/* documents and nodes                                                 */
/* ------------------------------------------------------------------ */

/* The folder of `name` as an absolute path when we can tell ("." joined to
 * the working directory for a bare file name). */
static char *folder_of(const char *name)
{
    const char *slash = name ? strrchr(name, '/') : NULL;
    char *dir;
    if (!slash)
        dir = strdup(".");
    else if (slash == name)
        dir = strdup("/");
    else
        dir = strndup(name, (size_t)(slash - name));
    if (!dir)
        return NULL;
    char *real = realpath(dir, NULL);
    if (real) {
        free(dir);
        return real;
    }
    if (dir[0] == '/')
        return dir;
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return dir;
    size_t n = strlen(cwd) + strlen(dir) + 2;
    char *abs = malloc(n);
    if (!abs)
        return dir;
    snprintf(abs, n, "%s/%s", cwd, dir);
    free(dir);
    return abs;
}

ccgw_config_doc_t *ccgw_config_doc_new(const char *name, bool positions)
{
    doc_impl_t *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->pub.name = strdup(name ? name : "config");
    d->pub.positions = positions;
    if (!d->pub.name) {
        free(d);
        return NULL;
    }
    return &d->pub;
}

struct ccgw_config *ccgw_config_node_new(ccgw_config_doc_t *doc, ccgw_node_kind_t kind, const char *text,
                                         unsigned line, unsigned col)
{
    if (!doc || (kind != CCGW_NODE_SCALAR && kind != CCGW_NODE_MAP && kind != CCGW_NODE_LIST))
        return NULL;
    if (doc->n_nodes >= CFG_MAX_NODES)
        return NULL;
    if (doc->n_nodes == doc->cap_nodes) {
        size_t cap = doc->cap_nodes ? doc->cap_nodes * 2 : 64;
        struct ccgw_config **nodes = realloc(doc->nodes, cap * sizeof *nodes);
        if (!nodes)
            return NULL;
        doc->nodes = nodes;
        doc->cap_nodes = cap;
    }
    node_impl_t *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->pub.kind = kind;
    n->pub.line = line;
    n->pub.col = col;
    n->pub.doc = doc;
    if (kind == CCGW_NODE_SCALAR) {
        n->pub.text = strdup(text ? text : "");
        if (!n->pub.text) {
            free(n);
            return NULL;
        }
    }
    doc->nodes[doc->n_nodes++] = &n->pub;
    return &n->pub;
}

static int grow_children(struct ccgw_config *node)
{
    if (node->count < node->cap)
        return 0;
    size_t cap = node->cap ? node->cap * 2 : 4;
    struct ccgw_config **items = realloc(node->items, cap * sizeof *items);
    if (!items)
        return CCGW_ENOMEM;
    node->items = items;
    if (node->kind == CCGW_NODE_MAP) {
        node_impl_t *n = impl(node);
        char **keys = realloc(node->keys, cap * sizeof *keys);
        if (!keys)
            return CCGW_ENOMEM;
        node->keys = keys;
        unsigned *kl = realloc(n->key_lines, cap * sizeof *kl);
        if (!kl)
            return CCGW_ENOMEM;
        n->key_lines = kl;
        unsigned *kc = realloc(n->key_cols, cap * sizeof *kc);
        if (!kc)
            return CCGW_ENOMEM;
        n->key_cols = kc;
    }
    node->cap = cap;
    return 0;
}

int ccgw_config__map_add_at(struct ccgw_config *map, const char *key, unsigned line, unsigned col,
                            struct ccgw_config *child)
{
    if (!map || map->kind != CCGW_NODE_MAP || !key || !child || child->doc != map->doc)
        return CCGW_EINVAL;
    if (grow_children(map) != 0)
        return CCGW_ENOMEM;
    char *k = strdup(key);
    if (!k)
        return CCGW_ENOMEM;
    node_impl_t *n = impl(map);
    map->keys[map->count] = k;
    n->key_lines[map->count] = line;
    n->key_cols[map->count] = col;
    map->items[map->count++] = child;
    return 0;
}

int ccgw_config_map_add(struct ccgw_config *map, const char *key, struct ccgw_config *child)
{
    return ccgw_config__map_add_at(map, key, child ? child->line : 0, child ? child->col : 0, child);
}

int ccgw_config_list_add(struct ccgw_config *list, struct ccgw_config *child)
{
    if (!list || list->kind != CCGW_NODE_LIST || !child || child->doc != list->doc)
        return CCGW_EINVAL;
    if (grow_children(list) != 0)
        return CCGW_ENOMEM;
    list->items[list->count++] = child;
    return 0;
}

void ccgw_config__key_pos(const struct ccgw_config *map, size_t i, unsigned *line, unsigned *col)
{
    unsigned l = 0, c = 0;
    if (map && map->kind == CCGW_NODE_MAP && i < map->count) {
        l = impl(map)->key_lines[i];
        c = impl(map)->key_cols[i];
    }
    if (line)
        *line = l;
    if (col)
        *col = c;
}

bool ccgw_config__reported(const struct ccgw_config *node) { return node && impl(node)->reported; }

void ccgw_config__set_reported(struct ccgw_config *node)
{
    if (node)
        impl(node)->reported = true;
}

const char *ccgw_config__dir(const ccgw_config_doc_t *doc) { return doc ? dimpl(doc)->dir : NULL; }

/* Turn a null scalar (`key:` with nothing) into an empty mapping or list. */
int ccgw_config__make_empty(struct ccgw_config *node, ccgw_node_kind_t kind)
{
    if (!node || node->kind != CCGW_NODE_SCALAR || (kind != CCGW_NODE_MAP && kind != CCGW_NODE_LIST))
        return CCGW_EINVAL;
    free(node->text);
    node->text = NULL;
    node->is_null = false;
    node->plain = false;
    node->kind = kind;
    return 0;
}

static void wipe(char *s)
{
    if (s)
        explicit_bzero(s, strlen(s));
}

void ccgw_config_doc_free(ccgw_config_doc_t *doc)
{
    if (!doc)
        return;
    for (size_t i = 0; i < doc->n_nodes; i++) {
        struct ccgw_config *n = doc->nodes[i];
        if (n->secret)
            wipe(n->text);
        free(n->text);
        for (size_t k = 0; n->keys && k < n->count; k++)
            free(n->keys[k]);
        free(n->keys);
        free(n->items);
        free(impl(n)->key_lines);
        free(impl(n)->key_cols);
        free(n);
    }
    free(doc->nodes);
    for (size_t i = 0; i < doc->n_diags; i++)
        free(doc->diags[i]);
    free(doc->diags);
    free(doc->name);
    free(dimpl(doc)->dir);
    free(dimpl(doc));
}

/* ------------------------------------------------------------------ */
/* diagnostics                                                         */
/* ------------------------------------------------------------------ */

static void vdiag(ccgw_config_doc_t *doc, unsigned line, unsigned col, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

static void vdiag(ccgw_config_doc_t *doc, unsigned line, unsigned col, const char *fmt, va_list ap)
{
    if (!doc)
        return;
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    char *d = NULL;
    int n;
    if (doc->positions && line > 0)
        n = asprintf(&d, "%s:%u:%u: %s", doc->name, line, col ? col : 1, msg);
    else
        n = asprintf(&d, "%s: %s", doc->name, msg);
    if (n < 0)
        return;
    pthread_mutex_lock(&diag_lock);
    doc_impl_t *di = dimpl(doc);
    if (doc->n_diags >= CFG_MAX_DIAGS) {
        free(d);
        d = NULL;
        if (di->diags_truncated) {
            pthread_mutex_unlock(&diag_lock);
            return;
        }
        di->diags_truncated = true;
        if (asprintf(&d, "%s: too many errors, the rest are not shown", doc->name) < 0) {
            pthread_mutex_unlock(&diag_lock);
            return;
        }
    }
    if (doc->n_diags == doc->cap_diags) {
        size_t cap = doc->cap_diags ? doc->cap_diags * 2 : 8;
        char **diags = realloc(doc->diags, cap * sizeof *diags);
        if (!diags) {
            pthread_mutex_unlock(&diag_lock);
            free(d);
            return;
        }
        doc->diags = diags;
        doc->cap_diags = cap;
    }
    doc->diags[doc->n_diags++] = d;
    pthread_mutex_unlock(&diag_lock);
}

void ccgw_config_diag(ccgw_config_doc_t *doc, const struct ccgw_config *node, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vdiag(doc, node ? node->line : 0, node ? node->col : 0, fmt, ap);
    va_end(ap);
}

void ccgw_config__diag_at(ccgw_config_doc_t *doc, unsigned line, unsigned col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vdiag(doc, line, col, fmt, ap);
    va_end(ap);
}

int ccgw_config_error(const ccgw_config_t *node, const char *fmt, ...)
{
    if (!node || !fmt)
        return CCGW_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    vdiag(node->doc, node->line, node->col, fmt, ap);
    va_end(ap);
    return CCGW_EINVAL;
}

int ccgw_config_verror(const ccgw_config_t *node, const char *fmt, va_list ap)
{
    if (!node || !fmt)
        return CCGW_EINVAL;
    vdiag(node->doc, node->line, node->col, fmt, ap);
    return CCGW_EINVAL;
}

bool ccgw_config_is_default(const ccgw_config_t *node) { return node && node->is_default; }

bool ccgw_config_is_plain(const ccgw_config_t *node)
{
    return node && node->kind == CCGW_NODE_SCALAR && (node->plain || node->is_null);
}

void ccgw_config_print_diags(const ccgw_config_doc_t *doc, FILE *out)
{
    if (!doc || !out)
        return;
    pthread_mutex_lock(&diag_lock);
    for (size_t i = 0; i < doc->n_diags; i++)
        fprintf(out, "%s\n", doc->diags[i]);
    pthread_mutex_unlock(&diag_lock);
}

const char *ccgw_config_where(const ccgw_config_t *node, char *buf, size_t len)
{
    if (!buf || len == 0)
        return buf;
    if (!node || !node->doc)
        snprintf(buf, len, "(unknown)");
    else if (node->doc->positions && node->line > 0)
        snprintf(buf, len, "%s:%u:%u", node->doc->name, node->line, node->col ? node->col : 1);
    else
        snprintf(buf, len, "%s", node->doc->name);
    return buf;
}

/* ------------------------------------------------------------------ */
/* YAML                                                                */
/* ------------------------------------------------------------------ */

#define TAG_PREFIX_STD "tag:yaml.org,2002:"

typedef struct frame {
    struct ccgw_config *node;
    char *key;        /* MAP: the key waiting for its value */
    unsigned kline, kcol;
    bool have_key;
    bool key_bad;     /* the key was not a usable scalar: drop its value */
} frame_t;

typedef struct builder {
    ccgw_config_doc_t *doc;
    const unsigned char *buf;
    size_t len;
    frame_t stack[CFG_MAX_DEPTH];
    int depth;
    bool fatal;
    bool oom;
} builder_t;

/* 1-based line and column (in characters) of a byte offset. */
static void offset_pos(const unsigned char *buf, size_t len, size_t off, unsigned *line, unsigned *col)
{
    unsigned l = 1, c = 1;
    if (off > len)
        off = len;
    for (size_t i = 0; i < off; i++) {
        if (buf[i] == '\n') {
            l++;
            c = 1;
        } else if ((buf[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static unsigned mark_u(size_t v) { return v >= UINT_MAX ? UINT_MAX : (unsigned)v + 1; }

static void syntax_error(builder_t *b, yaml_parser_t *p)
{
    ccgw_config_doc_t *doc = b->doc;
    const char *problem = p->problem ? p->problem : "cannot parse";
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        ccgw_config_diag(doc, NULL, "out of memory while parsing");
        break;
    case YAML_READER_ERROR: {
        unsigned l, c;
        offset_pos(b->buf, b->len, p->problem_offset, &l, &c);
        if (p->problem_value != -1)
            ccgw_config__diag_at(doc, l, c, "YAML error: %s (byte 0x%02x)", problem,
                                 (unsigned)p->problem_value & 0xffu);
        else
            ccgw_config__diag_at(doc, l, c, "YAML error: %s", problem);
        break;
    }
    default: {
        unsigned l = mark_u(p->problem_mark.line), c = mark_u(p->problem_mark.column);
        if (p->context)
            ccgw_config__diag_at(doc, l, c, "YAML syntax error: %s (%s started at %s:%u:%u)", problem,
                                 p->context, doc->name, mark_u(p->context_mark.line),
                                 mark_u(p->context_mark.column));
        else
            ccgw_config__diag_at(doc, l, c, "YAML syntax error: %s", problem);
        break;
    }
    }
    b->fatal = true;
}

/* Read at most `max` bytes of a regular file. Returns 0, or an errno-ish
 * code with *what describing the failure. */
static int read_regular_file(const char *path, size_t max, char **out, size_t *outlen, const char **what)
{
    *out = NULL;
    *outlen = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        *what = strerror(errno);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        *what = strerror(errno);
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        *what = "not a regular file";
        close(fd);
        return -1;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        *what = "out of memory";
        return -1;
    }
    for (;;) {
        if (len == cap) {
            if (cap > max) {
                free(buf);
                close(fd);
                *what = "file too large";
                return -1;
            }
            size_t ncap = cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                free(buf);
                close(fd);
                *what = "out of memory";
                return -1;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            *what = strerror(errno);
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (len > max) {
        explicit_bzero(buf, len);
        free(buf);
        *what = "file too large";
        return -1;
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    return 0;
}

/* Resolve !env / !file on a scalar node; errors mark the node reported. */
static void resolve_secret(builder_t *b, struct ccgw_config *n, bool is_env)
{
    ccgw_config_doc_t *doc = b->doc;
    const char *tag = is_env ? "!env" : "!file";
    if (n->text[0] == '\0') {
        ccgw_config_diag(doc, n, "%s needs a %s", tag, is_env ? "variable name" : "file path");
        ccgw_config__set_reported(n);
        return;
    }
    char *value = NULL;
    if (is_env) {
        const char *v = getenv(n->text);
        if (!v) {
            ccgw_config_diag(doc, n, "environment variable '%s' (from !env) is not set", n->text);
            ccgw_config__set_reported(n);
            return;
        }
        value = strdup(v);
    } else {
        char *path = NULL;
        if (n->text[0] == '/') {
            path = strdup(n->text);
        } else {
            const char *dir = dimpl(doc)->dir ? dimpl(doc)->dir : ".";
            if (asprintf(&path, "%s/%s", dir, n->text) < 0)
                path = NULL;
        }
        if (!path) {
            b->oom = true;
            return;
        }
        size_t len;
        const char *what = NULL;
        if (read_regular_file(path, CFG_MAX_SECRET_FILE, &value, &len, &what) != 0) {
            ccgw_config_diag(doc, n, "cannot read '%s' (from !file): %s", path, what ? what : "error");
            ccgw_config__set_reported(n);
            free(path);
            return;
        }
        free(path);
        if (memchr(value, '\0', len)) {
            ccgw_config_diag(doc, n, "file '%s' (from !file) contains a NUL byte", n->text);
            ccgw_config__set_reported(n);
            explicit_bzero(value, len);
            free(value);
            return;
        }
        if (len > 0 && value[len - 1] == '\n') {
            value[--len] = '\0';
            if (len > 0 && value[len - 1] == '\r')
                value[--len] = '\0';
        }
    }
    if (!value) {
        b->oom = true;
        return;
    }
    free(n->text);
    n->text = value;
    n->secret = true;
    n->plain = true; /* converts like an unquoted scalar */
    n->is_null = false;
}

static bool is_null_text(const char *s)
{
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* Attach a finished (or just started) node to the innermost container. */
static void attach(builder_t *b, struct ccgw_config *child, bool child_is_scalar, unsigned line, unsigned col)
{
    ccgw_config_doc_t *doc = b->doc;
    if (b->depth == 0) {
        if (!doc->root)
            doc->root = child;
        return;
    }
    frame_t *f = &b->stack[b->depth - 1];
    if (f->node->kind == CCGW_NODE_LIST) {
        if (ccgw_config_list_add(f->node, child) != 0)
            b->oom = true;
        return;
    }
    if (!f->have_key) {
        f->have_key = true;
        f->kline = line;
        f->kcol = col;
        if (!child_is_scalar || ccgw_config__reported(child)) {
            if (!child_is_scalar)
                ccgw_config_diag(doc, child, "mapping keys must be plain text, not a %s",
                                 child->kind == CCGW_NODE_MAP ? "mapping" : "list");
            f->key_bad = true;
            return;
        }
        f->key = strdup(child->text);
        f->key_bad = false;
        if (!f->key)
            b->oom = true;
        return;
    }
    if (!f->key_bad && ccgw_config__map_add_at(f->node, f->key, f->kline, f->kcol, child) != 0)
        b->oom = true;
    free(f->key);
    f->key = NULL;
    f->have_key = false;
    f->key_bad = false;
}

static bool key_expected(const builder_t *b)
{
    return b->depth > 0 && b->stack[b->depth - 1].node->kind == CCGW_NODE_MAP &&
           !b->stack[b->depth - 1].have_key;
}

static void check_anchor(builder_t *b, const yaml_char_t *anchor, struct ccgw_config *n)
{
    if (anchor)
        ccgw_config_diag(b->doc, n, "YAML anchors (&%s) are not supported", (const char *)anchor);
}

static void on_scalar(builder_t *b, yaml_event_t *e)
{
    unsigned line = mark_u(e->start_mark.line), col = mark_u(e->start_mark.column);
    const char *value = (const char *)e->data.scalar.value;
    const char *tag = (const char *)e->data.scalar.tag;
    bool as_key = key_expected(b);
    struct ccgw_config *n = ccgw_config_node_new(b->doc, CCGW_NODE_SCALAR, value, line, col);
    if (!n) {
        b->oom = true;
        return;
    }
    check_anchor(b, e->data.scalar.anchor, n);
    bool plain = e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    n->plain = plain;
    if (strlen(value) != e->data.scalar.length) {
        ccgw_config_diag(b->doc, n, "NUL character in %s", as_key ? "a key" : "a value");
        ccgw_config__set_reported(n);
    }
    if (tag && !strncmp(tag, TAG_PREFIX_STD, strlen(TAG_PREFIX_STD))) {
        if (!strcmp(tag, TAG_PREFIX_STD "str"))
            n->plain = false;
        else if (!strcmp(tag, TAG_PREFIX_STD "map") || !strcmp(tag, TAG_PREFIX_STD "seq")) {
            ccgw_config_diag(b->doc, n, "tag !!%s on a scalar", tag + strlen(TAG_PREFIX_STD));
            ccgw_config__set_reported(n);
        }
        tag = NULL;
    }
    if (tag && as_key) {
        ccgw_config_diag(b->doc, n, "tags (%s) are not allowed on keys", tag);
        ccgw_config__set_reported(n);
        tag = NULL;
    }
    n->is_null = n->plain && !tag && is_null_text(n->text);
    if (tag && !ccgw_config__reported(n)) {
        if (!strcmp(tag, "!env") || !strcmp(tag, "!file")) {
            resolve_secret(b, n, tag[1] == 'e');
        } else {
            ccgw_config_diag(b->doc, n, "unknown tag '%s' (use !env NAME or !file PATH)", tag);
            ccgw_config__set_reported(n);
        }
    }
    attach(b, n, true, line, col);
}

static void on_start(builder_t *b, yaml_event_t *e, ccgw_node_kind_t kind)
{
    unsigned line = mark_u(e->start_mark.line), col = mark_u(e->start_mark.column);
    if (b->depth >= CFG_MAX_DEPTH) {
        ccgw_config__diag_at(b->doc, line, col, "nesting deeper than %d levels", CFG_MAX_DEPTH);
        b->fatal = true;
        return;
    }
    struct ccgw_config *n = ccgw_config_node_new(b->doc, kind, NULL, line, col);
    if (!n) {
        b->oom = true;
        return;
    }
    const yaml_char_t *anchor, *ytag;
    if (kind == CCGW_NODE_MAP) {
        anchor = e->data.mapping_start.anchor;
        ytag = e->data.mapping_start.tag;
    } else {
        anchor = e->data.sequence_start.anchor;
        ytag = e->data.sequence_start.tag;
    }
    check_anchor(b, anchor, n);
    const char *tag = (const char *)ytag;
    if (tag && strncmp(tag, TAG_PREFIX_STD, strlen(TAG_PREFIX_STD)) != 0) {
        if (!strcmp(tag, "!env") || !strcmp(tag, "!file"))
            ccgw_config_diag(b->doc, n, "%s needs a scalar, not a %s", tag,
                             kind == CCGW_NODE_MAP ? "mapping" : "list");
        else
            ccgw_config_diag(b->doc, n, "unknown tag '%s' (use !env NAME or !file PATH)", tag);
        ccgw_config__set_reported(n);
    }
    attach(b, n, false, line, col);
    if (b->oom)
        return;
    b->stack[b->depth++] = (frame_t){.node = n};
}

static void on_end(builder_t *b)
{
    if (b->depth > 0) {
        b->depth--;
        free(b->stack[b->depth].key);
        b->stack[b->depth].key = NULL;
    }
}

static void build(builder_t *b)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        b->oom = true;
        return;
    }
    yaml_parser_set_input_string(&parser, b->buf, b->len);
    int documents = 0;
    bool done = false;
    while (!done && !b->fatal && !b->oom) {
        yaml_event_t e;
        if (!yaml_parser_parse(&parser, &e)) {
            syntax_error(b, &parser);
            break;
        }
        switch (e.type) {
        case YAML_STREAM_END_EVENT: done = true; break;
        case YAML_DOCUMENT_START_EVENT:
            if (++documents > 1) {
                ccgw_config__diag_at(b->doc, mark_u(e.start_mark.line), mark_u(e.start_mark.column),
                                     "only one YAML document is allowed in a configuration file");
                b->fatal = true;
            }
            break;
        case YAML_ALIAS_EVENT: {
            unsigned line = mark_u(e.start_mark.line), col = mark_u(e.start_mark.column);
            struct ccgw_config *n = ccgw_config_node_new(b->doc, CCGW_NODE_SCALAR, "", line, col);
            if (!n) {
                b->oom = true;
                break;
            }
            n->is_null = true;
            ccgw_config_diag(b->doc, n, "YAML aliases (*%s) are not supported",
                             (const char *)e.data.alias.anchor);
            ccgw_config__set_reported(n);
            attach(b, n, true, line, col);
            break;
        }
        case YAML_SCALAR_EVENT: on_scalar(b, &e); break;
        case YAML_SEQUENCE_START_EVENT: on_start(b, &e, CCGW_NODE_LIST); break;
        case YAML_MAPPING_START_EVENT: on_start(b, &e, CCGW_NODE_MAP); break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT: on_end(b); break;
        default: break;
        }
        yaml_event_delete(&e);
    }
    yaml_parser_delete(&parser);
    while (b->depth > 0)
        on_end(b);
    if (b->oom) {
        if (b->doc->n_nodes >= CFG_MAX_NODES)
            ccgw_config_diag(b->doc, NULL, "too many nodes (more than %u)", CFG_MAX_NODES);
        else
            ccgw_config_diag(b->doc, NULL, "out of memory while loading");
        b->fatal = true;
    }
    if (b->fatal)
        b->doc->root = NULL; /* a partial tree would only produce follow-up errors */
}

static ccgw_config_doc_t *load_buffer(const char *name, const char *buf, size_t len)
{
    ccgw_config_doc_t *doc = ccgw_config_doc_new(name, true);
    if (!doc)
        return NULL;
    dimpl(doc)->dir = folder_of(doc->name);
    if (len > CFG_MAX_INPUT) {
        ccgw_config_diag(doc, NULL, "file too large (%zu bytes, at most %u)", len, CFG_MAX_INPUT);
        return doc;
    }
    builder_t b = {.doc = doc, .buf = (const unsigned char *)(buf ? buf : ""), .len = buf ? len : 0};
    build(&b);
    return doc;
}

ccgw_config_doc_t *ccgw_config_load_yaml_buffer(const char *name, const char *buf, size_t len)
{
    return load_buffer(name, buf, len);
}

ccgw_config_doc_t *ccgw_config_load_yaml_file(const char *path)
{
    char *buf = NULL;
    size_t len = 0;
    const char *what = NULL;
    if (!path)
        path = "(null)";
    if (read_regular_file(path, CFG_MAX_INPUT, &buf, &len, &what) != 0) {
        ccgw_config_doc_t *doc = ccgw_config_doc_new(path, true);
        if (doc) {
            dimpl(doc)->dir = folder_of(doc->name);
            ccgw_config_diag(doc, NULL, "cannot read: %s", what ? what : "error");
        }
        return doc;
    }
    ccgw_config_doc_t *doc = load_buffer(path, buf, len);
    explicit_bzero(buf, len); /* the file may hold inline secrets */
    free(buf);
    return doc;
}

/* ------------------------------------------------------------------ */
/* public getters (ccgw/config.h)                                      */
/* ------------------------------------------------------------------ */

ccgw_node_kind_t ccgw_config_kind(const ccgw_config_t *node) { return node ? node->kind : CCGW_NODE_NONE; }

const ccgw_config_t *ccgw_config_get(const ccgw_config_t *map, const char *key)
{
    if (!map || map->kind != CCGW_NODE_MAP || !key)
        return NULL;
    for (size_t i = 0; i < map->count; i++)
        if (!strcmp(map->keys[i], key))
            return map->items[i];
    return NULL;
}

const char *ccgw_config_text(const ccgw_config_t *scalar)
{
    return scalar && scalar->kind == CCGW_NODE_SCALAR ? scalar->text : NULL;
}

/* Decimal or 0x hex, optional sign, the whole text. Shared with config_schema.c. */
int ccgw_config__parse_int(const char *s, int64_t *out);
int ccgw_config__parse_double(const char *s, double *out);
int ccgw_config__parse_bool(const char *s, bool *out);

int ccgw_config__parse_int(const char *s, int64_t *out)
{
    if (!s || !*s)
        return CCGW_EINVAL;
    const char *p = s;
    bool neg = false;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    int base = 10;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    }
    /* strtoull would accept leading blanks and another sign: refuse them */
    if (!((*p >= '0' && *p <= '9') || (base == 16 && ((*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))))
        return CCGW_EINVAL;
    errno = 0;
    char *end;
    unsigned long long u = strtoull(p, &end, base);
    if (errno || *end)
        return CCGW_EINVAL;
    int64_t v;
    if (neg) {
        if (u > (unsigned long long)INT64_MAX + 1u)
            return CCGW_EINVAL;
        v = u == (unsigned long long)INT64_MAX + 1u ? INT64_MIN : -(int64_t)u;
    } else {
        if (u > (unsigned long long)INT64_MAX)
            return CCGW_EINVAL;
        v = (int64_t)u;
    }
    if (out)
        *out = v;
    return 0;
}

int ccgw_config__parse_double(const char *s, double *out)
{
    if (!s || !*s)
        return CCGW_EINVAL;
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    if (!((*p >= '0' && *p <= '9') || *p == '.'))
        return CCGW_EINVAL; /* no blanks, no nan/inf */
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v))
        return CCGW_EINVAL;
    if (out)
        *out = v;
    return 0;
}

int ccgw_config__parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    if (!s)
        return CCGW_EINVAL;
    for (size_t i = 0; i < 3; i++) {
        if (!strcmp(s, yes[i])) {
            if (out)
                *out = true;
            return 0;
        }
        if (!strcmp(s, no[i])) {
            if (out)
                *out = false;
            return 0;
        }
    }
    return CCGW_EINVAL;
}

int ccgw_config_as_int(const ccgw_config_t *scalar, int64_t *out)
{
    if (!scalar || scalar->kind != CCGW_NODE_SCALAR || scalar->is_null)
        return CCGW_EINVAL;
    return ccgw_config__parse_int(scalar->text, out);
}

int ccgw_config_as_double(const ccgw_config_t *scalar, double *out)
{
    if (!scalar || scalar->kind != CCGW_NODE_SCALAR || scalar->is_null)
        return CCGW_EINVAL;
    return ccgw_config__parse_double(scalar->text, out);
}

int ccgw_config_as_bool(const ccgw_config_t *scalar, bool *out)
{
    if (!scalar || scalar->kind != CCGW_NODE_SCALAR || scalar->is_null)
        return CCGW_EINVAL;
    return ccgw_config__parse_bool(scalar->text, out);
}

const char *ccgw_config_string(const ccgw_config_t *map, const char *key, const char *fallback)
{
    const ccgw_config_t *n = ccgw_config_get(map, key);
    if (!n || n->kind != CCGW_NODE_SCALAR || n->is_null)
        return fallback;
    return n->text;
}

int64_t ccgw_config_int(const ccgw_config_t *map, const char *key, int64_t fallback)
{
    int64_t v;
    return ccgw_config_as_int(ccgw_config_get(map, key), &v) == 0 ? v : fallback;
}

double ccgw_config_double(const ccgw_config_t *map, const char *key, double fallback)
{
    double v;
    return ccgw_config_as_double(ccgw_config_get(map, key), &v) == 0 ? v : fallback;
}

bool ccgw_config_bool(const ccgw_config_t *map, const char *key, bool fallback)
{
    bool v;
    return ccgw_config_as_bool(ccgw_config_get(map, key), &v) == 0 ? v : fallback;
}

size_t ccgw_config_count(const ccgw_config_t *node)
{
    return node && (node->kind == CCGW_NODE_MAP || node->kind == CCGW_NODE_LIST) ? node->count : 0;
}

const ccgw_config_t *ccgw_config_at(const ccgw_config_t *node, size_t i)
{
    if (!node || (node->kind != CCGW_NODE_MAP && node->kind != CCGW_NODE_LIST) || i >= node->count)
        return NULL;
    return node->items[i];
}

const char *ccgw_config_key_at(const ccgw_config_t *map, size_t i)
{
    if (!map || map->kind != CCGW_NODE_MAP || i >= map->count)
        return NULL;
    return map->keys[i];
}
