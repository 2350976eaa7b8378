/* loader - see loader.h. */
#include "loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ccgw_version.h"
#include "config_schema.h"
#include "log.h"

typedef struct loaded {
    struct loaded *next;
    char *name;
    void *dl;
    ccgw_plugin_t desc; /* zero-extended copy */
} loaded_t;

struct ccgw_loader {
    char **dirs;
    size_t n_dirs;
    loaded_t *loaded;
};

/* The fields every ABI 1.x descriptor has, up to and including destroy. */
#define MIN_DESC_SIZE (offsetof(ccgw_plugin_t, destroy) + sizeof(void (*)(void *)))

ccgw_loader_t *ccgw_loader_new(void) { return calloc(1, sizeof(ccgw_loader_t)); }

void ccgw_loader_free(ccgw_loader_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n_dirs; i++)
        free(l->dirs[i]);
    free(l->dirs);
    loaded_t *p = l->loaded;
    while (p) {
        loaded_t *n = p->next;
        dlclose(p->dl);
        free(p->name);
        free(p);
        p = n;
    }
    free(l);
}

int ccgw_loader_add_dir(ccgw_loader_t *l, const char *dir)
{
    for (size_t i = 0; i < l->n_dirs; i++)
        if (strcmp(l->dirs[i], dir) == 0)
            return CCGW_OK;
    char **nd = realloc(l->dirs, (l->n_dirs + 1) * sizeof *nd);
    if (!nd)
        return CCGW_ENOMEM;
    l->dirs = nd;
    l->dirs[l->n_dirs] = strdup(dir);
    if (!l->dirs[l->n_dirs])
        return CCGW_ENOMEM;
    l->n_dirs++;
    return CCGW_OK;
}

void ccgw_loader_add_default_dirs(ccgw_loader_t *l)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            /* the build tree (bin/ next to lib/ccgw/plugins), then the install tree */
            const char *rel[] = {"../lib/ccgw/plugins", CCGW_PLUGIN_REL_DIR};
            for (size_t i = 0; i < 2; i++) {
                char dir[PATH_MAX + 64];
                snprintf(dir, sizeof dir, "%s/%s", exe, rel[i]);
                char real[PATH_MAX];
                if (realpath(dir, real))
                    ccgw_loader_add_dir(l, real);
            }
        }
    }
    ccgw_loader_add_dir(l, CCGW_PLUGIN_INSTALL_DIR);
}

static bool valid_plugin_name(const char *s)
{
    if (!s || !*s || strlen(s) > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return false;
    return true;
}

static const char *file_stem(const char *path, char *buf, size_t len)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(buf, len, "%s", b);
    char *dot = strstr(buf, ".so");
    if (dot && dot[3] == '\0')
        *dot = '\0';
    return buf;
}

void *ccgw_loader_open_file(const char *path, ccgw_plugin_t *out, char *why, size_t whylen)
{
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        snprintf(why, whylen, "cannot load %s: %s", path, dlerror());
        return NULL;
    }
    const void *sym = dlsym(dl, CCGW_PLUGIN_SYMBOL);
    if (!sym) {
        snprintf(why, whylen,
                 "%s is not a ccgw plugin: it exports no '%s' (define it with CCGW_PLUGIN_DEFINE)",
                 path, CCGW_PLUGIN_SYMBOL);
        dlclose(dl);
        return NULL;
    }
    /* the three header fields, before anything else */
    const struct {
        uint16_t abi_major, abi_minor;
        uint32_t size;
    } *h = sym;
    if (h->abi_major != CCGW_ABI_MAJOR) {
        snprintf(why, whylen, "%s was built for plugin ABI %u.%u; this gateway has ABI %d.%d (rebuild it against this SDK)",
                 path, h->abi_major, h->abi_minor, CCGW_ABI_MAJOR, CCGW_ABI_MINOR);
        dlclose(dl);
        return NULL;
    }
    if (h->abi_minor > CCGW_ABI_MINOR) {
        snprintf(why, whylen, "%s needs plugin ABI %u.%u; this gateway has ABI %d.%d (upgrade the gateway)",
                 path, h->abi_major, h->abi_minor, CCGW_ABI_MAJOR, CCGW_ABI_MINOR);
        dlclose(dl);
        return NULL;
    }
    if (h->size < MIN_DESC_SIZE) {
        snprintf(why, whylen, "%s: descriptor size %u is smaller than the %zu bytes every ABI %u.x descriptor has (plugin ABI %u.%u; gateway ABI %d.%d)",
                 path, h->size, (size_t)MIN_DESC_SIZE, h->abi_major, h->abi_major, h->abi_minor,
                 CCGW_ABI_MAJOR, CCGW_ABI_MINOR);
        dlclose(dl);
        return NULL;
    }
    memset(out, 0, sizeof *out);
    memcpy(out, sym, h->size < sizeof *out ? h->size : sizeof *out);

    char stem[128];
    file_stem(path, stem, sizeof stem);
    const char *problem = NULL;
    char buf[256];
    if (!valid_plugin_name(out->name))
        problem = "its name is missing or not [a-z0-9_-]+";
    else if (strcmp(out->name, stem) != 0) {
        snprintf(buf, sizeof buf, "its name '%s' does not match the file name '%s.so'", out->name, stem);
        problem = buf;
    } else if (!out->create || !out->start || !out->stop || !out->destroy) {
        snprintf(buf, sizeof buf, "it has no %s callback (create, start, stop and destroy are required)",
                 !out->create ? "create" : !out->start ? "start" : !out->stop ? "stop" : "destroy");
        problem = buf;
    }
    else if (out->commands && out->commands[0].name && !out->command)
        problem = "it declares commands but has no command callback";
    else if (out->options && ccgw_schema_check_table(out->options, buf, sizeof buf) != 0)
        problem = buf;
    for (const ccgw_command_spec_t *c = out->commands; !problem && c && c->name; c++) {
        if (c->args && ccgw_schema_check_table(c->args, buf, sizeof buf) != 0)
            problem = buf;
    }
    if (problem) {
        char copy[256];
        snprintf(copy, sizeof copy, "%s", problem);
        snprintf(why, whylen, "%s (ABI %u.%u) refused: %s", path, h->abi_major, h->abi_minor, copy);
        dlclose(dl);
        return NULL;
    }
    return dl;
}

const ccgw_plugin_t *ccgw_loader_get(ccgw_loader_t *l, const char *name, char *why, size_t whylen,
                                     bool *exists)
{
    if (exists)
        *exists = false;
    for (loaded_t *p = l->loaded; p; p = p->next)
        if (strcmp(p->name, name) == 0)
            return &p->desc;
    if (!valid_plugin_name(name)) {
        snprintf(why, whylen, "'%s' is not a plugin name ([a-z0-9_-]+)", name);
        return NULL;
    }
    for (size_t i = 0; i < l->n_dirs; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s.so", l->dirs[i], name);
        if (access(path, F_OK) != 0)
            continue;
        if (exists)
            *exists = true;
        loaded_t *p = calloc(1, sizeof *p);
        if (!p) {
            snprintf(why, whylen, "out of memory");
            return NULL;
        }
        p->dl = ccgw_loader_open_file(path, &p->desc, why, whylen);
        if (!p->dl) {
            free(p);
            return NULL;
        }
        p->name = strdup(name);
        p->next = l->loaded;
        l->loaded = p;
        CLOG_DEBUG("loader", "loaded %s (%s %s, ABI %u.%u)", path, p->desc.name,
                   p->desc.version ? p->desc.version : "", p->desc.abi_major, p->desc.abi_minor);
        return &p->desc;
    }
    size_t off = (size_t)snprintf(why, whylen, "no %s.so in", name);
    for (size_t i = 0; i < l->n_dirs && off < whylen; i++)
        off += (size_t)snprintf(why + off, whylen - off, "%s %s", i ? "," : "", l->dirs[i]);
    if (l->n_dirs == 0 && off < whylen)
        snprintf(why + off, whylen - off, " (no plugin directories)");
    return NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int ccgw_loader_list(ccgw_loader_t *l, FILE *out)
{
    int good = 0;
    for (size_t i = 0; i < l->n_dirs; i++) {
        DIR *d = opendir(l->dirs[i]);
        if (!d)
            continue;
        char **names = NULL;
        size_t n = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            size_t len = strlen(e->d_name);
            if (len > 3 && strcmp(e->d_name + len - 3, ".so") == 0) {
                char **nn = realloc(names, (n + 1) * sizeof *nn);
                if (!nn)
                    break;
                names = nn;
                names[n++] = strdup(e->d_name);
            }
        }
        closedir(d);
        if (n)
            qsort(names, n, sizeof *names, cmp_str);
        if (n)
            fprintf(out, "%s:\n", l->dirs[i]);
        for (size_t k = 0; k < n; k++) {
            char path[PATH_MAX], why[512];
            snprintf(path, sizeof path, "%s/%s", l->dirs[i], names[k]);
            ccgw_plugin_t desc;
            void *dl = names[k] ? ccgw_loader_open_file(path, &desc, why, sizeof why) : NULL;
            if (dl) {
                fprintf(out, "  %-16s %-10s ABI %u.%u  %s\n", desc.name, desc.version ? desc.version : "-",
                        desc.abi_major, desc.abi_minor, desc.description ? desc.description : "");
                dlclose(dl);
                good++;
            } else if (names[k]) {
                fprintf(out, "  %-16s refused: %s\n", names[k], why);
            }
            free(names[k]);
        }
        free(names);
    }
    return good;
}
