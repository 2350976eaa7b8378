/*
 * main - the ccgw command line: run, check a config, list and describe
 * plugins, print the version. See docs/operations.md.
 */
#include <getopt.h>
#include <mosquitto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "ccgw_version.h"
#include "config.h"
#include "config_schema.h"
#include "gateway.h"
#include "loader.h"
#include "log.h"

typedef struct resolver_ctx {
    ccgw_loader_t *loader;
    bool run;                 /* running (not --check-config): a refused plugin fails only its instance */
    const char *const *extra_dirs;
    size_t n_extra;
    bool dirs_added;
} resolver_ctx_t;

static void add_dirs(resolver_ctx_t *r, const ccgw_gateway_config_t *cfg)
{
    if (r->dirs_added)
        return;
    for (size_t i = 0; cfg && i < cfg->n_plugin_dirs; i++)
        ccgw_loader_add_dir(r->loader, cfg->plugin_dirs[i]);
    for (size_t i = 0; i < r->n_extra; i++)
        ccgw_loader_add_dir(r->loader, r->extra_dirs[i]);
    ccgw_loader_add_default_dirs(r->loader);
    r->dirs_added = true;
}

static const ccgw_plugin_t *resolve(void *ctx, const ccgw_gateway_config_t *cfg, const char *name,
                                    char *why, size_t whylen, bool *fatal)
{
    resolver_ctx_t *r = ctx;
    add_dirs(r, cfg);
    bool exists = false;
    const ccgw_plugin_t *p = ccgw_loader_get(r->loader, name, why, whylen, &exists);
    if (!p && exists && r->run)
        *fatal = false; /* the file is there but incompatible: run the other instances */
    return p;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ccgw --config FILE          run the gateway (foreground, logs to stderr)\n"
            "       ccgw --check-config FILE    validate FILE and its plugins' options; start nothing\n"
            "       ccgw --list-plugins         list plugins in the plugin directories\n"
            "       ccgw --describe-plugin NAME the plugin's options and commands\n"
            "       ccgw --version              version and plugin SDK ABI\n"
            "       ccgw --hash-token           read a token on stdin, print its sha256 (http.tokens[].sha256)\n"
            "options: --plugin-dir DIR (repeatable; searched after gateway.plugin_dirs)\n"
            "signals: SIGTERM/SIGINT stop gracefully, SIGHUP reloads the config file\n");
}

static void describe(const ccgw_plugin_t *p)
{
    printf("%s %s (plugin ABI %u.%u)\n", p->name, p->version ? p->version : "", p->abi_major, p->abi_minor);
    if (p->description)
        printf("%s\n", p->description);
    printf("\noptions:\n");
    if (p->options && p->options[0].key)
        ccgw_schema_describe(stdout, p->options, 2);
    else
        printf("  (none)\n");
    printf("\ncommands (topic .../{class}/{device}/cmd/NAME, JSON arguments):\n");
    if (!p->commands || !p->commands[0].name)
        printf("  (none declared for every device; devices may add their own)\n");
    for (const ccgw_command_spec_t *c = p->commands; c && c->name; c++) {
        printf("  %s\n", c->name);
        if (c->doc)
            printf("      %s\n", c->doc);
        if (c->args)
            ccgw_schema_describe(stdout, c->args, 6);
    }
}

/* --hash-token: the token on stdin (one line; the trailing newline is not
 * part of it, as with token_file), its lower-case hex SHA-256 on stdout. */
static int hash_token(void)
{
    char buf[4098];
    size_t n = fread(buf, 1, sizeof buf - 1, stdin);
    if (n > 4096) {
        fprintf(stderr, "ccgw: token too long (at most 4096 bytes)\n");
        return 1;
    }
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        buf[--n] = '\0';
    if (n == 0) {
        fprintf(stderr, "ccgw: no token on stdin\n");
        return 1;
    }
    char hex[65];
    ccgw_auth_hash_token(buf, hex);
    explicit_bzero(buf, sizeof buf);
    printf("%s\n", hex);
    return 0;
}

/*
 * GnuTLS initialises itself from a library constructor as soon as it is
 * loaded (about 0.6 MB of resident pages, and p11-kit's module list), and it
 * is loaded with the ISAPI plugin only because libcurl links librtmp, which
 * links GnuTLS; nothing in ccgw uses it (curl's TLS is OpenSSL). While the
 * plugins of the configuration are loaded, GNUTLS_NO_IMPLICIT_INIT=1 skips
 * that constructor (GnuTLS's own switch); a plugin that does use GnuTLS calls
 * gnutls_global_init() in create, as GnuTLS documents for this case
 * (docs/operations.md, memory). Set by the operator (to 0, say), it is left
 * alone. Plugins loaded later (a reload that adds one) initialise GnuTLS as
 * usual, and no child process ever inherits it.
 */
static bool gnutls_lazy_set;

static void gnutls_lazy_begin(void)
{
    if (!getenv("GNUTLS_NO_IMPLICIT_INIT") && setenv("GNUTLS_NO_IMPLICIT_INIT", "1", 0) == 0)
        gnutls_lazy_set = true;
}

static void gnutls_lazy_end(void)
{
    if (gnutls_lazy_set)
        unsetenv("GNUTLS_NO_IMPLICIT_INIT");
    gnutls_lazy_set = false;
}

int main(int argc, char **argv)
{
    enum { OPT_CONFIG = 1, OPT_CHECK, OPT_LIST, OPT_DESCRIBE, OPT_VERSION, OPT_PLUGIN_DIR, OPT_HELP, OPT_HASH_TOKEN };
    static const struct option opts[] = {
        {"config", required_argument, NULL, OPT_CONFIG},
        {"check-config", required_argument, NULL, OPT_CHECK},
        {"list-plugins", no_argument, NULL, OPT_LIST},
        {"describe-plugin", required_argument, NULL, OPT_DESCRIBE},
        {"version", no_argument, NULL, OPT_VERSION},
        {"plugin-dir", required_argument, NULL, OPT_PLUGIN_DIR},
        {"help", no_argument, NULL, OPT_HELP},
        {"hash-token", no_argument, NULL, OPT_HASH_TOKEN},
        {NULL, 0, NULL, 0}};
    const char *config = NULL, *check = NULL, *describe_name = NULL;
    bool list = false;
    const char *dirs[32];
    size_t n_dirs = 0;
    int c;
    while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
        switch (c) {
        case OPT_CONFIG:
        case 'c': config = optarg; break;
        case OPT_CHECK: check = optarg; break;
        case OPT_LIST: list = true; break;
        case OPT_DESCRIBE: describe_name = optarg; break;
        case OPT_VERSION:
        case 'V':
            printf("ccgw %s\nplugin SDK ABI %d.%d\n", CCGW_VERSION, CCGW_ABI_MAJOR, CCGW_ABI_MINOR);
            return 0;
        case OPT_PLUGIN_DIR:
            if (n_dirs < 32)
                dirs[n_dirs++] = optarg;
            break;
        case OPT_HELP:
        case 'h': usage(stdout); return 0;
        case OPT_HASH_TOKEN: return hash_token();
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || (!config && !check && !list && !describe_name)) {
        usage(stderr);
        return 2;
    }

    ccgw_loader_t *loader = ccgw_loader_new();
    if (!loader)
        return 1;
    resolver_ctx_t rctx = {.loader = loader, .extra_dirs = dirs, .n_extra = n_dirs};

    if (list || describe_name) {
        add_dirs(&rctx, NULL);
        int rc = 0;
        if (list) {
            if (ccgw_loader_list(loader, stdout) == 0) {
                fprintf(stderr, "no loadable plugins found\n");
                rc = 1;
            }
        } else {
            char why[512];
            const ccgw_plugin_t *p = ccgw_loader_get(loader, describe_name, why, sizeof why, NULL);
            if (!p) {
                fprintf(stderr, "ccgw: plugin '%s': %s\n", describe_name, why);
                rc = 1;
            } else {
                describe(p);
            }
        }
        ccgw_loader_free(loader);
        return rc;
    }

    const char *path = check ? check : config;
    rctx.run = !check;
    gnutls_lazy_begin(); /* single-threaded here: no thread reads the environment */
    ccgw_gateway_config_t *cfg = ccgw_gateway_config_load(path, resolve, &rctx);
    gnutls_lazy_end();
    if (!cfg) {
        fprintf(stderr, "%s: out of memory\n", path);
        ccgw_loader_free(loader);
        return 1;
    }
    if (cfg->doc->n_diags > 0) {
        ccgw_config_print_diags(cfg->doc, stderr);
        fprintf(stderr, "%s: %zu error%s; %s\n", path, cfg->doc->n_diags, cfg->doc->n_diags == 1 ? "" : "s",
                check ? "configuration is invalid" : "refusing to start");
        ccgw_gateway_config_free(cfg);
        ccgw_loader_free(loader);
        return 1;
    }
    if (check) {
        printf("%s: ok (%zu instance%s)\n", path, cfg->n_instances, cfg->n_instances == 1 ? "" : "s");
        ccgw_gateway_config_free(cfg);
        ccgw_loader_free(loader);
        return 0;
    }

    ccgw_log_set_level((ccgw_log_level_t)cfg->log_level);
    /* every thread inherits this mask; the main thread takes the signals */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    mosquitto_lib_init();
    int rc = 1;
    ccgw_gateway_t *gw = ccgw_gateway_new(cfg, loader);
    if (!gw) {
        CLOG_ERROR("gateway", "cannot set up the gateway (see above)");
    } else {
        gw->resolver = resolve; /* reload resolves plugins the same way */
        gw->resolver_ctx = &rctx;
        if (ccgw_gateway_start(gw) == 0) {
            rc = ccgw_gateway_run(gw);
            ccgw_gateway_stop(gw);
        }
    }
    if (gw && ccgw_gateway_has_abandoned(gw)) {
        /* a plugin thread is stuck in a plugin call and may still touch the
         * gateway's memory: exit without freeing anything (the kernel does) */
        CLOG_WARN("gateway", "exiting with a plugin thread still stuck; nothing freed");
        fflush(NULL);
        _exit(rc);
    }
    ccgw_gateway_free(gw);
    mosquitto_lib_cleanup();
    ccgw_gateway_config_free(cfg);
    ccgw_loader_free(loader);
    return rc;
}
