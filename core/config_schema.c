/*
 * config_schema - validate a node against a ccgw_option_t table; describe a
 * table; check that a table is well-formed.
 *
 * Messages (each prefixed FILE:LINE:COL by the document):
 *   unknown key 'K' in WHAT (known: a, b, c)        at the key
 *   duplicate key 'K' in WHAT (first defined at F:L:C) at the second key
 *   missing required option 'K' in WHAT             at the parent mapping
 *   'K' must be an int in 1..65535, got 'abc'       at the value
 *   no value for 'K' (expected a string)            at the value
 * WHAT is the caller's label ("gateway", "instance 'ups1' options") with
 * ".key" / "[i]" appended for nested mappings. Values of secret options and
 * of !env / !file nodes are never printed.
 *
 * Defaults: an absent option with `def` gets a plain SCALAR node marked
 * is_default at the parent's position; an absent OBJECT whose children have
 * defaults (at any depth) gets an empty MAP (is_default) filled the same way,
 * without "missing required" errors inside it.
 */
#include "config_schema.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SCHEMA_MAX_DEPTH 32 /* tables nested deeper than this are refused (cycles) */

const char *ccgw_schema_type_name(ccgw_opt_type_t t)
{
    switch (t) {
    case CCGW_OPT_STRING: return "string";
    case CCGW_OPT_INT: return "int";
    case CCGW_OPT_DOUBLE: return "double";
    case CCGW_OPT_BOOL: return "bool";
    case CCGW_OPT_ENUM: return "enum";
    case CCGW_OPT_SCALAR: return "scalar";
    case CCGW_OPT_OBJECT: return "object";
    case CCGW_OPT_LIST: return "list";
    case CCGW_OPT_END: break;
    }
    return "?";
}

static bool is_scalar_type(ccgw_opt_type_t t) { return t >= CCGW_OPT_STRING && t <= CCGW_OPT_SCALAR; }

/* ---- small string builder ---- */

typedef struct sbuf {
    char buf[768];
    size_t len;
} sbuf_t;

static void sb_add(sbuf_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf_t *s, const char *fmt, ...)
{
    if (s->len >= sizeof s->buf - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->buf + s->len, sizeof s->buf - s->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        s->len += (size_t)n;
    if (s->len >= sizeof s->buf)
        s->len = sizeof s->buf - 1;
}

/* A bound as text: integers without exponent, others %g. */
static void fmt_num(char *out, size_t len, double v)
{
    if (v > -1e15 && v < 1e15 && v == (double)(long long)v) /* no libm: ccgw_core does not link it */
        snprintf(out, len, "%lld", (long long)v);
    else
        snprintf(out, len, "%g", v);
}

static void add_range(sbuf_t *s, const ccgw_option_t *o)
{
    char a[40], b[40];
    fmt_num(a, sizeof a, o->min);
    fmt_num(b, sizeof b, o->max);
    sb_add(s, "%s..%s", a, b);
}

static void add_choices(sbuf_t *s, const ccgw_option_t *o)
{
    for (const char *const *c = o->choices; c && *c; c++)
        sb_add(s, "%s%s", c == o->choices ? "" : "|", *c);
}

/* "an int in 1..65535", "one of a|b", "a mapping" ... for messages. */
static void expected(sbuf_t *s, const ccgw_option_t *o, ccgw_opt_type_t t)
{
    bool range = (o->flags & CCGW_OPT_F_RANGE) && t == o->type;
    switch (t) {
    case CCGW_OPT_STRING:
        sb_add(s, "a string");
        if (range) {
            sb_add(s, " of ");
            add_range(s, o);
            sb_add(s, " characters");
        }
        break;
    case CCGW_OPT_INT:
        sb_add(s, "an int");
        if (range) {
            sb_add(s, " in ");
            add_range(s, o);
        }
        break;
    case CCGW_OPT_DOUBLE:
        sb_add(s, "a number");
        if (range) {
            sb_add(s, " in ");
            add_range(s, o);
        }
        break;
    case CCGW_OPT_BOOL: sb_add(s, "a bool (true or false)"); break;
    case CCGW_OPT_ENUM:
        sb_add(s, "one of ");
        add_choices(s, o);
        break;
    case CCGW_OPT_SCALAR: sb_add(s, "a scalar value"); break;
    case CCGW_OPT_OBJECT: sb_add(s, "a mapping"); break;
    case CCGW_OPT_LIST: sb_add(s, "a list"); break;
    case CCGW_OPT_END: sb_add(s, "nothing"); break;
    }
}

/* What we got, for messages; never the text of a secret. */
static void got(sbuf_t *s, const struct ccgw_config *v, bool secret)
{
    if (v->kind == CCGW_NODE_MAP) {
        sb_add(s, "a mapping");
    } else if (v->kind == CCGW_NODE_LIST) {
        sb_add(s, "a list");
    } else if (secret || v->secret) {
        sb_add(s, "a secret value");
    } else {
        sb_add(s, "%s'%.120s%s'", v->plain ? "" : "quoted ", v->text, strlen(v->text) > 120 ? "..." : "");
    }
}

/* ---- validation ---- */

typedef struct vctx {
    ccgw_config_doc_t *doc;
    int errors;
} vctx_t;

static void verr(vctx_t *c, unsigned line, unsigned col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void verr(vctx_t *c, unsigned line, unsigned col, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ccgw_config__diag_at(c->doc, line, col, "%s", msg);
    c->errors++;
}

static void validate_map(vctx_t *c, struct ccgw_config *map, const ccgw_option_t *table, const char *what,
                         bool defaults_only, int depth);

static void child_what(char *out, size_t len, const char *what, const char *name)
{
    if (what && *what)
        snprintf(out, len, "%s.%s", what, name);
    else
        snprintf(out, len, "%s", name);
}

static void type_error(vctx_t *c, const struct ccgw_config *v, const ccgw_option_t *o, ccgw_opt_type_t t,
                       const char *name)
{
    sbuf_t s = {.len = 0};
    sb_add(&s, "'%s' must be ", name);
    expected(&s, o, t);
    sb_add(&s, ", got ");
    got(&s, v, (o->flags & CCGW_OPT_F_SECRET) != 0);
    verr(c, v->line, v->col, "%s", s.buf);
}

/* A scalar value against a scalar type. */
static void check_scalar(vctx_t *c, struct ccgw_config *v, const ccgw_option_t *o, ccgw_opt_type_t t,
                         const char *name)
{
    bool range = (o->flags & CCGW_OPT_F_RANGE) && t == o->type;
    switch (t) {
    case CCGW_OPT_STRING:
        if (range) {
            double n = (double)strlen(v->text);
            if (n < o->min || n > o->max)
                type_error(c, v, o, t, name);
        }
        break;
    case CCGW_OPT_INT: {
        int64_t x;
        if (!v->plain || ccgw_config__parse_int(v->text, &x) != 0 ||
            (range && ((double)x < o->min || (double)x > o->max)))
            type_error(c, v, o, t, name);
        break;
    }
    case CCGW_OPT_DOUBLE: {
        double x;
        if (!v->plain || ccgw_config__parse_double(v->text, &x) != 0 || (range && (x < o->min || x > o->max)))
            type_error(c, v, o, t, name);
        break;
    }
    case CCGW_OPT_BOOL:
        if (!v->plain || ccgw_config__parse_bool(v->text, NULL) != 0)
            type_error(c, v, o, t, name);
        break;
    case CCGW_OPT_ENUM: {
        bool ok = false;
        for (const char *const *ch = o->choices; ch && *ch && !ok; ch++)
            ok = !strcmp(*ch, v->text);
        if (!ok)
            type_error(c, v, o, t, name);
        break;
    }
    default: break; /* SCALAR: anything */
    }
}

/* Validate value `v` of type `t` (o->type, or o->item_type for list items). */
static void validate_value(vctx_t *c, struct ccgw_config *v, const ccgw_option_t *o, ccgw_opt_type_t t,
                           const char *name, const char *what, int depth)
{
    if (ccgw_config__reported(v))
        return;
    if (v->kind == CCGW_NODE_SCALAR && v->is_null) {
        sbuf_t s = {.len = 0};
        expected(&s, o, t);
        verr(c, v->line, v->col, "no value for '%s' (expected %s)", name, s.buf);
        return;
    }
    if (is_scalar_type(t)) {
        if (v->kind != CCGW_NODE_SCALAR)
            type_error(c, v, o, t, name);
        else
            check_scalar(c, v, o, t, name);
        return;
    }
    char sub[512];
    child_what(sub, sizeof sub, what, name);
    if (t == CCGW_OPT_OBJECT) {
        if (v->kind != CCGW_NODE_MAP) {
            type_error(c, v, o, t, name);
            return;
        }
        if (o->children) /* no children: a free-form mapping (checked elsewhere) */
            validate_map(c, v, o->children, sub, false, depth + 1);
        return;
    }
    if (t == CCGW_OPT_LIST) {
        if (v->kind != CCGW_NODE_LIST) {
            type_error(c, v, o, t, name);
            return;
        }
        if ((o->flags & CCGW_OPT_F_RANGE) &&
            ((double)v->count < o->min || (double)v->count > o->max)) {
            char a[40], b[40];
            fmt_num(a, sizeof a, o->min);
            fmt_num(b, sizeof b, o->max);
            verr(c, v->line, v->col, "'%s' must have %s..%s items, got %zu", name, a, b, v->count);
        }
        if (o->item_type == CCGW_OPT_LIST || o->item_type == CCGW_OPT_END)
            return; /* refused by ccgw_schema_check_table; accept anything here */
        for (size_t i = 0; i < v->count; i++) {
            char iname[300];
            snprintf(iname, sizeof iname, "%s[%zu]", name, i);
            validate_value(c, v->items[i], o, o->item_type, iname, what, depth + 1);
        }
    }
}

static bool has_defaults(const ccgw_option_t *table, int depth)
{
    if (!table || depth > SCHEMA_MAX_DEPTH)
        return false;
    for (const ccgw_option_t *o = table; o->key; o++) {
        if (o->def && is_scalar_type(o->type))
            return true;
        if (o->type == CCGW_OPT_OBJECT && has_defaults(o->children, depth + 1))
            return true;
    }
    return false;
}

static void known_keys(sbuf_t *s, const ccgw_option_t *table)
{
    if (!table || !table->key) {
        sb_add(s, "none");
        return;
    }
    for (const ccgw_option_t *o = table; o->key; o++)
        sb_add(s, "%s%s", o == table ? "" : ", ", o->key);
}

/* Edit distance, bounded, for "did you mean". */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static const char *suggest(const char *key, const ccgw_option_t *table)
{
    const char *best = NULL;
    size_t bd = SIZE_MAX, len = strlen(key);
    size_t limit = len < 4 ? 1 : len < 9 ? 2 : 3;
    for (const ccgw_option_t *o = table; o && o->key; o++) {
        size_t d = distance(key, o->key);
        if (d < bd) {
            bd = d;
            best = o->key;
        }
    }
    return bd <= limit ? best : NULL;
}

static void validate_map(vctx_t *c, struct ccgw_config *map, const ccgw_option_t *table, const char *what,
                         bool defaults_only, int depth)
{
    if (depth > SCHEMA_MAX_DEPTH)
        return;
    const char *in = what && *what ? what : "the top level";
    size_t given = map->count; /* defaults are appended after these */
    size_t n_opts = 0;
    while (table && table[n_opts].key)
        n_opts++;
    /* first[k]: index in the map where option k was first given (SIZE_MAX: not yet) */
    size_t first_small[64], *first = first_small;
    if (n_opts > 64 && !(first = malloc(n_opts * sizeof *first))) {
        verr(c, map->line, map->col, "out of memory while validating");
        return;
    }
    for (size_t k = 0; k < n_opts; k++)
        first[k] = SIZE_MAX;
    for (size_t i = 0; i < given; i++) {
        const char *key = map->keys[i];
        unsigned kl, kc;
        ccgw_config__key_pos(map, i, &kl, &kc);
        const ccgw_option_t *o = NULL;
        size_t k = 0;
        for (; k < n_opts; k++)
            if (!strcmp(table[k].key, key)) {
                o = &table[k];
                break;
            }
        if (!o) {
            sbuf_t s = {.len = 0};
            sb_add(&s, "unknown key '%.100s' in %s (known: ", key, in);
            known_keys(&s, table);
            sb_add(&s, ")");
            const char *hint = suggest(key, table);
            if (hint)
                sb_add(&s, "; did you mean '%s'?", hint);
            verr(c, kl, kc, "%s", s.buf);
            continue;
        }
        if (first[k] != SIZE_MAX) {
            unsigned fl, fc;
            ccgw_config__key_pos(map, first[k], &fl, &fc);
            if (c->doc->positions && fl > 0)
                verr(c, kl, kc, "duplicate key '%s' in %s (first defined at %s:%u:%u)", key, in, c->doc->name, fl,
                     fc);
            else
                verr(c, kl, kc, "duplicate key '%s' in %s", key, in);
            continue;
        }
        first[k] = i;
        validate_value(c, map->items[i], o, o->type, key, what, depth);
    }
    for (size_t k = 0; k < n_opts; k++) {
        const ccgw_option_t *o = &table[k];
        if (first[k] != SIZE_MAX)
            continue;
        if (o->flags & CCGW_OPT_F_REQUIRED) {
            if (!defaults_only)
                verr(c, map->line, map->col, "missing required option '%s' in %s", o->key, in);
            continue;
        }
        struct ccgw_config *n = NULL;
        if (o->def && is_scalar_type(o->type)) {
            n = ccgw_config_node_new(c->doc, CCGW_NODE_SCALAR, o->def, map->line, map->col);
            if (n)
                n->plain = true;
        } else if (o->type == CCGW_OPT_OBJECT && has_defaults(o->children, depth + 1)) {
            n = ccgw_config_node_new(c->doc, CCGW_NODE_MAP, NULL, map->line, map->col);
        } else {
            continue;
        }
        if (!n || ccgw_config__map_add_at(map, o->key, map->line, map->col, n) != 0) {
            verr(c, map->line, map->col, "out of memory while filling in defaults");
            break;
        }
        n->is_default = true;
        if (n->kind == CCGW_NODE_MAP) {
            char sub[512];
            child_what(sub, sizeof sub, what, o->key);
            validate_map(c, n, o->children, sub, true, depth + 1);
        }
    }
    if (first != first_small)
        free(first);
}

int ccgw_schema_validate(struct ccgw_config *node, const ccgw_option_t *table, const char *what)
{
    if (!node || !node->doc)
        return 0;
    vctx_t c = {.doc = node->doc};
    const char *label = what && *what ? what : "the top level";
    if (ccgw_config__reported(node))
        return 0;
    if (node->kind != CCGW_NODE_MAP) {
        sbuf_t s = {.len = 0};
        sb_add(&s, "%s must be a mapping, got ", label);
        got(&s, node, false);
        verr(&c, node->line, node->col, "%s", s.buf);
        return c.errors;
    }
    validate_map(&c, node, table, what, false, 0);
    return c.errors;
}

int ccgw_schema_validate_child(struct ccgw_config *parent, const char *key, const ccgw_option_t *table,
                               const char *what)
{
    if (!parent || parent->kind != CCGW_NODE_MAP || !key)
        return 0;
    struct ccgw_config *child = (struct ccgw_config *)ccgw_config_get(parent, key);
    if (!child) {
        child = ccgw_config_node_new(parent->doc, CCGW_NODE_MAP, NULL, parent->line, parent->col);
        if (!child || ccgw_config__map_add_at(parent, key, parent->line, parent->col, child) != 0) {
            ccgw_config_diag(parent->doc, parent, "out of memory");
            return 1;
        }
        child->is_default = true;
    } else if (child->kind == CCGW_NODE_SCALAR && child->is_null && !ccgw_config__reported(child)) {
        ccgw_config__make_empty(child, CCGW_NODE_MAP); /* `key:` with nothing = empty mapping */
    }
    return ccgw_schema_validate(child, table, what);
}

/* ---- describe ---- */

static int max_key_width(const ccgw_option_t *table)
{
    int w = 0;
    for (const ccgw_option_t *o = table; o && o->key; o++) {
        int l = (int)strlen(o->key);
        if (l > w)
            w = l;
    }
    return w > 40 ? 40 : w;
}

static void describe(FILE *out, const ccgw_option_t *table, int indent, int depth)
{
    if (!out || !table || depth > SCHEMA_MAX_DEPTH)
        return;
    if (indent < 0)
        indent = 0;
    int w = max_key_width(table);
    for (const ccgw_option_t *o = table; o->key; o++) {
        sbuf_t s = {.len = 0};
        sb_add(&s, "%s", ccgw_schema_type_name(o->type));
        bool range = (o->flags & CCGW_OPT_F_RANGE) != 0;
        switch (o->type) {
        case CCGW_OPT_INT:
        case CCGW_OPT_DOUBLE:
            if (range) {
                sb_add(&s, " ");
                add_range(&s, o);
            }
            break;
        case CCGW_OPT_STRING:
            if (range) {
                sb_add(&s, " (");
                add_range(&s, o);
                sb_add(&s, " chars)");
            }
            break;
        case CCGW_OPT_ENUM:
            sb_add(&s, " ");
            add_choices(&s, o);
            break;
        case CCGW_OPT_LIST:
            sb_add(&s, " of %s", ccgw_schema_type_name(o->item_type));
            if (o->item_type == CCGW_OPT_ENUM) {
                sb_add(&s, " ");
                add_choices(&s, o);
            }
            if (range) {
                sb_add(&s, " (");
                add_range(&s, o);
                sb_add(&s, " items)");
            }
            break;
        default: break;
        }
        if (o->def)
            sb_add(&s, "  default %s", o->def);
        if (o->flags & CCGW_OPT_F_REQUIRED)
            sb_add(&s, "  required");
        if (o->flags & CCGW_OPT_F_SECRET)
            sb_add(&s, "  secret (use !env NAME or !file PATH)");
        fprintf(out, "%*s%-*s  %s\n", indent, "", w, o->key, s.buf);
        if (o->doc && *o->doc)
            fprintf(out, "%*s%s\n", indent + 4, "", o->doc);
        if (o->children && (o->type == CCGW_OPT_OBJECT ||
                            (o->type == CCGW_OPT_LIST && o->item_type == CCGW_OPT_OBJECT)))
            describe(out, o->children, indent + 2, depth + 1);
    }
}

void ccgw_schema_describe(FILE *out, const ccgw_option_t *table, int indent)
{
    describe(out, table, indent, 0);
}

/* ---- table check ---- */

static int check_default(const ccgw_option_t *o, char *why, size_t whylen, const char *path)
{
    const char *d = o->def;
    bool range = (o->flags & CCGW_OPT_F_RANGE) != 0;
    switch (o->type) {
    case CCGW_OPT_STRING:
        if (range && ((double)strlen(d) < o->min || (double)strlen(d) > o->max))
            goto bad;
        return 0;
    case CCGW_OPT_INT: {
        int64_t v;
        if (ccgw_config__parse_int(d, &v) != 0 || (range && ((double)v < o->min || (double)v > o->max)))
            goto bad;
        return 0;
    }
    case CCGW_OPT_DOUBLE: {
        double v;
        if (ccgw_config__parse_double(d, &v) != 0 || (range && (v < o->min || v > o->max)))
            goto bad;
        return 0;
    }
    case CCGW_OPT_BOOL:
        if (ccgw_config__parse_bool(d, NULL) != 0)
            goto bad;
        return 0;
    case CCGW_OPT_ENUM:
        for (const char *const *c = o->choices; c && *c; c++)
            if (!strcmp(*c, d))
                return 0;
        goto bad;
    case CCGW_OPT_SCALAR: return 0;
    default:
        snprintf(why, whylen, "option '%s': a %s cannot have a default", path, ccgw_schema_type_name(o->type));
        return CCGW_EINVAL;
    }
bad:
    snprintf(why, whylen, "option '%s': default '%s' is not a valid %s%s", path, d,
             ccgw_schema_type_name(o->type), range ? " in its range" : "");
    return CCGW_EINVAL;
}

static int check_table(const ccgw_option_t *table, char *why, size_t whylen, const char *prefix, int depth)
{
    if (depth > SCHEMA_MAX_DEPTH) {
        snprintf(why, whylen, "options under '%s' nested deeper than %d levels (a cycle?)", prefix,
                 SCHEMA_MAX_DEPTH);
        return CCGW_EINVAL;
    }
    size_t n = 0;
    for (const ccgw_option_t *o = table; o->key; o++, n++) {
        char path[256];
        if (*prefix)
            snprintf(path, sizeof path, "%s.%s", prefix, o->key);
        else
            snprintf(path, sizeof path, "%s", o->key);
        if (n >= 4096) {
            snprintf(why, whylen, "table '%s' has more than 4096 options (missing CCGW_OPTION_END?)", prefix);
            return CCGW_EINVAL;
        }
        if (!*o->key) {
            snprintf(why, whylen, "an option under '%s' has an empty key", *prefix ? prefix : "(top)");
            return CCGW_EINVAL;
        }
        for (const ccgw_option_t *p = table; p < o; p++)
            if (!strcmp(p->key, o->key)) {
                snprintf(why, whylen, "option '%s' is declared twice", path);
                return CCGW_EINVAL;
            }
        if (o->type < CCGW_OPT_STRING || o->type > CCGW_OPT_LIST) {
            snprintf(why, whylen, "option '%s' has an unknown type %d", path, (int)o->type);
            return CCGW_EINVAL;
        }
        if ((o->flags & CCGW_OPT_F_RANGE) && !(o->min <= o->max)) {
            snprintf(why, whylen, "option '%s': range min > max", path);
            return CCGW_EINVAL;
        }
        if ((o->flags & CCGW_OPT_F_REQUIRED) && o->def) {
            snprintf(why, whylen, "option '%s' is required and has a default", path);
            return CCGW_EINVAL;
        }
        if ((o->type == CCGW_OPT_ENUM || (o->type == CCGW_OPT_LIST && o->item_type == CCGW_OPT_ENUM)) &&
            (!o->choices || !o->choices[0])) {
            snprintf(why, whylen, "enum option '%s' has no choices", path);
            return CCGW_EINVAL;
        }
        if (o->type == CCGW_OPT_LIST && (o->item_type < CCGW_OPT_STRING || o->item_type > CCGW_OPT_OBJECT)) {
            snprintf(why, whylen, "list option '%s' needs an item_type (a scalar type or OBJECT)", path);
            return CCGW_EINVAL;
        }
        bool object = o->type == CCGW_OPT_OBJECT || (o->type == CCGW_OPT_LIST && o->item_type == CCGW_OPT_OBJECT);
        if (object && !o->children) {
            snprintf(why, whylen, "option '%s' is an object without children", path);
            return CCGW_EINVAL;
        }
        if (o->def && check_default(o, why, whylen, path) != 0)
            return CCGW_EINVAL;
        if (object && check_table(o->children, why, whylen, path, depth + 1) != 0)
            return CCGW_EINVAL;
    }
    return 0;
}

int ccgw_schema_check_table(const ccgw_option_t *table, char *why, size_t whylen)
{
    char dummy[8];
    if (!why || whylen == 0) {
        why = dummy;
        whylen = sizeof dummy;
    }
    why[0] = '\0';
    if (!table)
        return 0;
    return check_table(table, why, whylen, "", 0);
}
