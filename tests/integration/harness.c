/* harness - see harness.h. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <modbus.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

/* ========================================================================== */
/* time and logging                                                            */
/* ========================================================================== */

static int64_t g_t0;

int64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int h_scaled(int ms)
{
    static int scale = -1;
    if (scale < 0) {
        const char *s = getenv("CCGW_IT_TIMEOUT_SCALE");
        scale = s && atoi(s) > 0 ? atoi(s) : 1;
    }
    return ms * scale;
}

void h_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void h_log(const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    if (g_t0 == 0)
        g_t0 = h_now_ms();
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    int64_t t = h_now_ms() - g_t0;
    fprintf(stderr, "[it %4lld.%03lld] %s\n", (long long)(t / 1000), (long long)(t % 1000), buf);
    fflush(stderr);
}

static bool verbose(void)
{
    static int v = -1;
    if (v < 0) {
        const char *s = getenv("CCGW_IT_VERBOSE");
        v = s && *s && strcmp(s, "0") != 0;
    }
    return v != 0;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p) {
        fprintf(stderr, "harness: out of memory\n");
        abort();
    }
    return p;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d) {
        fprintf(stderr, "harness: out of memory\n");
        abort();
    }
    return d;
}

/* ========================================================================== */
/* processes: registry and cleanup                                             */
/* ========================================================================== */

struct h_proc {
    h_env *env;
    pid_t pid;
    char name[64];
    char log[PATH_MAX];
    bool exited;
    int status;
};

#define H_MAX_PROCS 256
#define H_MAX_DIRS 64

struct h_env {
    char dir[200];
    char name[64];
    unsigned nspawn;
    h_proc *procs[H_MAX_PROCS];
    size_t nprocs;
};

/* every child ever started (pids only: read from the signal handler) */
static volatile pid_t g_pids[H_MAX_PROCS * 4];
static volatile size_t g_npids;
static char *g_dirs[H_MAX_DIRS];
static size_t g_ndirs;
static bool g_cleanup_installed;
h_env *h_current_env;

static void kill_all_children(void)
{
    for (size_t i = 0; i < g_npids; i++) {
        pid_t pid = g_pids[i];
        if (pid > 0) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
        }
    }
}

static void atexit_cleanup(void)
{
    for (size_t i = 0; i < g_npids; i++) {
        pid_t pid = g_pids[i];
        if (pid > 0 && waitpid(pid, NULL, WNOHANG) == 0) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
    }
}

static pid_t g_owner; /* the test process; a forked child must not kill its siblings */

static void on_fatal_signal(int sig)
{
    if (getpid() == g_owner)
        kill_all_children();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_cleanup(void)
{
    if (g_cleanup_installed)
        return;
    g_cleanup_installed = true;
    g_owner = getpid();
    if (g_t0 == 0)
        g_t0 = h_now_ms();
    atexit(atexit_cleanup);
    /* ctest sends SIGTERM/SIGKILL on timeout; children also have PDEATHSIG */
    signal(SIGTERM, on_fatal_signal);
    signal(SIGINT, on_fatal_signal);
    signal(SIGHUP, on_fatal_signal);
    signal(SIGPIPE, SIG_IGN);
}

static void remember_pid(pid_t pid)
{
    if (g_npids < sizeof g_pids / sizeof g_pids[0])
        g_pids[g_npids++] = pid;
}

static void forget_pid(pid_t pid)
{
    for (size_t i = 0; i < g_npids; i++)
        if (g_pids[i] == pid)
            g_pids[i] = 0;
}

/* ========================================================================== */
/* environment                                                                 */
/* ========================================================================== */

h_env *h_env_new(const char *name)
{
    install_cleanup();
    h_env *env = xcalloc(1, sizeof *env);
    snprintf(env->name, sizeof env->name, "%s", name);
    snprintf(env->dir, sizeof env->dir, "/tmp/ccgw-it-%s-XXXXXX", name);
    if (!mkdtemp(env->dir)) {
        fprintf(stderr, "harness: mkdtemp %s: %s\n", env->dir, strerror(errno));
        abort();
    }
    /* readable by a broker that dropped privileges */
    chmod(env->dir, 0755);
    if (g_ndirs < H_MAX_DIRS)
        g_dirs[g_ndirs++] = xstrdup(env->dir);
    h_log("%s: temporary directory %s", name, env->dir);
    return env;
}

const char *h_env_dir(const h_env *env)
{
    return env->dir;
}

void h_env_path(const h_env *env, const char *file, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", env->dir, file);
}

void h_env_free(h_env *env)
{
    if (!env)
        return;
    for (size_t i = env->nprocs; i-- > 0;) {
        h_proc *p = env->procs[i];
        if (h_proc_alive(p)) {
            char st[64];
            int s = h_proc_stop(p, h_scaled(3000));
            h_log("%s: stopped %s (pid %d): %s", env->name, p->name, (int)p->pid,
                  h_status_str(s, st, sizeof st));
        }
    }
    for (size_t i = 0; i < env->nprocs; i++)
        free(env->procs[i]);
    if (h_current_env == env)
        h_current_env = NULL;
    free(env);
}

static int rm_rf(const char *dir)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/rm", "rm", "-rf", "--", dir, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

int h_finish(int failures)
{
    const char *keep = getenv("CCGW_IT_KEEP");
    bool k = failures != 0 || (keep && *keep && strcmp(keep, "0") != 0);
    for (size_t i = 0; i < g_ndirs; i++) {
        if (k)
            fprintf(stderr, "[it] kept %s (process logs and configs)\n", g_dirs[i]);
        else
            rm_rf(g_dirs[i]);
        free(g_dirs[i]);
        g_dirs[i] = NULL;
    }
    g_ndirs = 0;
    return failures != 0 ? 1 : 0;
}

int h_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    size_t n = strlen(text);
    int rc = fwrite(text, 1, n, f) == n ? 0 : -1;
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

char *h_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return NULL;
    }
    for (;;) {
        if (cap - n < 2048) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* ========================================================================== */
/* ports                                                                       */
/* ========================================================================== */

int h_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

bool h_port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

bool h_wait_port(int port, h_proc *p, int timeout_ms)
{
    int64_t end = h_now_ms() + timeout_ms;
    for (;;) {
        if (h_port_open(port))
            return true;
        if (p && !h_proc_alive(p))
            return false;
        if (h_now_ms() >= end)
            return false;
        h_sleep_ms(10);
    }
}

/* ========================================================================== */
/* processes                                                                   */
/* ========================================================================== */

static h_proc *spawn_ex(h_env *env, const char *name, const char *const argv[], const char *out_path,
                        const char *err_path)
{
    install_cleanup();
    int out = open(out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int err = strcmp(out_path, err_path) == 0 ? out
                                                 : open(err_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                                                        0644);
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (out < 0 || err < 0 || nul < 0) {
        fprintf(stderr, "harness: cannot open %s / %s: %s\n", out_path, err_path, strerror(errno));
        if (out >= 0)
            close(out);
        if (err >= 0 && err != out)
            close(err);
        if (nul >= 0)
            close(nul);
        return NULL;
    }
    {
        /* a header line in the log: what ran */
        char hdr[1024];
        int n = snprintf(hdr, sizeof hdr, "=== harness: starting");
        for (size_t i = 0; argv[i] && n < (int)sizeof hdr - 2; i++)
            n += snprintf(hdr + n, sizeof hdr - (size_t)n, " %s", argv[i]);
        if (n > (int)sizeof hdr - 2)
            n = (int)sizeof hdr - 2;
        hdr[n++] = '\n';
        if (write(err, hdr, (size_t)n) < 0) {
            /* the log is only for humans */
        }
    }
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    /* no signal handler of ours may run in the child before execv */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) {
        for (int sig = 1; sig < NSIG; sig++)
            if (sig != SIGKILL && sig != SIGSTOP)
                signal(sig, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(nul, 0);
        dup2(out, 1);
        dup2(err, 2);
        execv(argv[0], (char *const *)argv);
        static const char msg[] = "harness: execv failed\n";
        if (write(2, msg, sizeof msg - 1) < 0) {
        }
        _exit(127);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(nul);
    if (err != out)
        close(err);
    close(out);
    if (pid < 0) {
        fprintf(stderr, "harness: fork: %s\n", strerror(errno));
        return NULL;
    }
    setpgid(pid, pid); /* races with the child's own call; either wins */
    remember_pid(pid);
    h_proc *p = xcalloc(1, sizeof *p);
    p->env = env;
    p->pid = pid;
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->log, sizeof p->log, "%s", err_path);
    if (env && env->nprocs < H_MAX_PROCS)
        env->procs[env->nprocs++] = p;
    h_log("started %s (pid %d), log %s", name, (int)pid, err_path);
    return p;
}

h_proc *h_spawn(h_env *env, const char *name, const char *const argv[])
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s.%u.log", env->dir, name, ++env->nspawn);
    return spawn_ex(env, name, argv, path, path);
}

pid_t h_proc_pid(const h_proc *p)
{
    return p ? p->pid : -1;
}

const char *h_proc_name(const h_proc *p)
{
    return p ? p->name : "(none)";
}

const char *h_proc_log(const h_proc *p)
{
    return p ? p->log : "(none)";
}

bool h_proc_alive(h_proc *p)
{
    if (!p || p->exited)
        return false;
    int st;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid || (r < 0 && errno == ECHILD)) {
        p->exited = true;
        p->status = r == p->pid ? st : -1;
        forget_pid(p->pid);
        return false;
    }
    return true;
}

bool h_proc_wait(h_proc *p, int timeout_ms, int *status)
{
    int64_t end = h_now_ms() + timeout_ms;
    while (h_proc_alive(p)) {
        if (h_now_ms() >= end)
            return false;
        h_sleep_ms(5);
    }
    if (status)
        *status = p ? p->status : -1;
    return true;
}

void h_proc_signal(h_proc *p, int sig)
{
    if (h_proc_alive(p))
        kill(p->pid, sig);
}

int h_proc_stop(h_proc *p, int grace_ms)
{
    if (!p)
        return -1;
    if (h_proc_alive(p)) {
        if (kill(-p->pid, SIGTERM) != 0)
            kill(p->pid, SIGTERM);
        if (!h_proc_wait(p, grace_ms, NULL)) {
            h_log("%s (pid %d) ignored SIGTERM for %d ms: SIGKILL", p->name, (int)p->pid, grace_ms);
            kill(-p->pid, SIGKILL);
            kill(p->pid, SIGKILL);
            int st;
            if (waitpid(p->pid, &st, 0) == p->pid) {
                p->exited = true;
                p->status = st;
                forget_pid(p->pid);
            }
        }
    }
    /* anything left in its group (children) goes too */
    kill(-p->pid, SIGKILL);
    return p->status;
}

int h_proc_status(const h_proc *p)
{
    return p && p->exited ? p->status : -1;
}

const char *h_status_str(int status, char *buf, size_t len)
{
    if (status == -1)
        snprintf(buf, len, "unknown");
    else if (WIFEXITED(status))
        snprintf(buf, len, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "signal %d (%s)%s", WTERMSIG(status), strsignal(WTERMSIG(status)),
                 WCOREDUMP(status) ? ", core dumped" : "");
    else
        snprintf(buf, len, "status 0x%x", (unsigned)status);
    return buf;
}

static bool find_line(const char *text, const char *needle, char *line, size_t len)
{
    const char *hit = strstr(text, needle);
    if (!hit)
        return false;
    const char *b = hit;
    while (b > text && b[-1] != '\n')
        b--;
    const char *e = strchr(hit, '\n');
    if (!e)
        return false; /* wait for the whole line */
    if (line && len) {
        size_t n = (size_t)(e - b);
        if (n >= len)
            n = len - 1;
        memcpy(line, b, n);
        line[n] = '\0';
    }
    return true;
}

bool h_proc_wait_log(h_proc *p, const char *needle, int timeout_ms, char *line, size_t len)
{
    int64_t end = h_now_ms() + timeout_ms;
    for (;;) {
        bool alive = h_proc_alive(p); /* read after: output of a dead process is complete */
        char *text = h_read_file(p->log);
        bool found = text && find_line(text, needle, line, len);
        free(text);
        if (found)
            return true;
        if (!alive || h_now_ms() >= end)
            return false;
        h_sleep_ms(10);
    }
}

int h_proc_listening_port(h_proc *p, int timeout_ms)
{
    char line[512];
    if (!h_proc_wait_log(p, "LISTENING tcp ", timeout_ms, line, sizeof line))
        return -1;
    const char *colon = strrchr(line, ':');
    return colon ? atoi(colon + 1) : -1;
}

void h_proc_dump_log(const h_proc *p, int lines)
{
    if (!p)
        return;
    char *text = h_read_file(p->log);
    fprintf(stderr, "----- %s (pid %d) log %s%s -----\n", p->name, (int)p->pid, p->log,
            text ? "" : " (unreadable)");
    if (text) {
        size_t n = strlen(text);
        int seen = 0;
        size_t start = n;
        while (start > 0) {
            if (text[start - 1] == '\n' && start != n && ++seen >= lines)
                break;
            start--;
        }
        if (start > 0)
            fprintf(stderr, "[... %zu bytes before]\n", start);
        fputs(text + start, stderr);
        if (n && text[n - 1] != '\n')
            fputc('\n', stderr);
    }
    fprintf(stderr, "----- end of %s -----\n", p->name);
    free(text);
}

void h_env_dump_logs(const h_env *env, int lines)
{
    if (!env)
        return;
    for (size_t i = 0; i < env->nprocs; i++)
        h_proc_dump_log(env->procs[i], lines);
}

int h_run(h_env *env, const char *name, const char *const argv[], int timeout_ms, char **out,
          char **err)
{
    char op[PATH_MAX], ep[PATH_MAX];
    unsigned n = ++env->nspawn;
    snprintf(op, sizeof op, "%s/%s.%u.out", env->dir, name, n);
    snprintf(ep, sizeof ep, "%s/%s.%u.err", env->dir, name, n);
    h_proc *p = spawn_ex(env, name, argv, op, ep);
    if (out)
        *out = NULL;
    if (err)
        *err = NULL;
    if (!p)
        return -1;
    int st = -1;
    if (!h_proc_wait(p, timeout_ms, &st)) {
        h_log("%s did not finish within %d ms: SIGKILL", name, timeout_ms);
        st = h_proc_stop(p, 0);
        st = -1;
    }
    if (out) {
        *out = h_read_file(op);
        if (!*out)
            *out = xstrdup("");
    }
    if (err) {
        /* drop the harness' header line */
        char *e = h_read_file(ep);
        char *body = e ? strchr(e, '\n') : NULL;
        *err = xstrdup(body ? body + 1 : "");
        free(e);
    }
    return st;
}

int h_run_ok(h_env *env, const char *name, const char *const argv[])
{
    char *out = NULL, *err = NULL;
    int st = h_run(env, name, argv, h_scaled(20000), &out, &err);
    bool ok = st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!ok) {
        char buf[64];
        h_log("%s failed (%s): %s%s", name, h_status_str(st, buf, sizeof buf), out ? out : "", err ? err : "");
    }
    free(out);
    free(err);
    return ok ? 0 : -1;
}

/* ---- test PKI ------------------------------------------------------------- */

#define H_OPENSSL_BIN "/usr/bin/openssl"

static const char pki_cnf[] = "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n"
                              "[v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
                              "subjectKeyIdentifier = hash\n"
                              "[server]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
                              "extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n"
                              "[client]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
                              "extendedKeyUsage = clientAuth\n";

static int pki_cnf_path(h_env *env, char *cfg, size_t len)
{
    h_env_path(env, "openssl.cnf", cfg, len);
    struct stat st;
    if (stat(cfg, &st) == 0)
        return 0;
    return h_write_file(cfg, pki_cnf);
}

/* DIR/NAME.EXT */
static void pki_file(h_env *env, const char *name, const char *ext, char *out)
{
    char file[256];
    snprintf(file, sizeof file, "%s.%s", name, ext);
    h_env_path(env, file, out, PATH_MAX);
}

int h_pki_ca(h_env *env, const char *name, const char *subject)
{
    char cfg[PATH_MAX], key[PATH_MAX], crt[PATH_MAX];
    if (pki_cnf_path(env, cfg, sizeof cfg) != 0)
        return -1;
    pki_file(env, name, "key", key);
    pki_file(env, name, "crt", crt);
    const char *argv[] = {H_OPENSSL_BIN, "req", "-config", cfg, "-x509", "-newkey", "ec", "-pkeyopt",
                          "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt, "-days", "2",
                          "-subj", subject, "-extensions", "v3_ca", NULL};
    return h_run_ok(env, "openssl-ca", argv);
}

int h_pki_leaf(h_env *env, const char *ca, const char *name, const char *subject, const char *kind, int serial)
{
    if (strcmp(kind, "server") != 0 && strcmp(kind, "client") != 0)
        return -1;
    char cfg[PATH_MAX], key[PATH_MAX], csr[PATH_MAX], crt[PATH_MAX], ca_crt[PATH_MAX], ca_key[PATH_MAX];
    char serial_s[24];
    if (pki_cnf_path(env, cfg, sizeof cfg) != 0)
        return -1;
    pki_file(env, name, "key", key);
    pki_file(env, name, "csr", csr);
    pki_file(env, name, "crt", crt);
    pki_file(env, ca, "crt", ca_crt);
    pki_file(env, ca, "key", ca_key);
    snprintf(serial_s, sizeof serial_s, "%d", serial);
    const char *req[] = {H_OPENSSL_BIN, "req", "-config", cfg, "-new", "-newkey", "ec", "-pkeyopt",
                         "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr, "-subj", subject, NULL};
    const char *sign[] = {H_OPENSSL_BIN, "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
                          "-set_serial", serial_s, "-days", "2", "-out", crt, "-extfile", cfg,
                          "-extensions", kind, NULL};
    if (h_run_ok(env, "openssl-req", req) != 0 || h_run_ok(env, "openssl-sign", sign) != 0)
        return -1;
    return 0;
}

/* ========================================================================== */
/* mosquitto                                                                   */
/* ========================================================================== */

static int broker_spawn(h_broker *b)
{
    char text[1024];
    snprintf(text, sizeof text,
             "# private broker of an integration test\n"
             "listener %d 127.0.0.1\n"
             "allow_anonymous true\n"
             "persistence false\n"
             "set_tcp_nodelay true\n"
             "max_queued_messages 100000\n"
             "log_dest stderr\n"
             "%s",
             b->port,
             /* as root, stay root: keeps PR_SET_PDEATHSIG (cleared by setuid) */
             geteuid() == 0 ? "user root\n" : "");
    if (h_write_file(b->conf, text) != 0) {
        h_log("cannot write %s: %s", b->conf, strerror(errno));
        return -1;
    }
    const char *argv[] = {MOSQUITTO_BIN, "-c", b->conf, NULL};
    b->proc = h_spawn(b->env, "mosquitto", argv);
    if (!b->proc)
        return -1;
    if (h_wait_port(b->port, b->proc, h_scaled(5000)))
        return 0;
    h_log("mosquitto did not accept on port %d", b->port);
    h_proc_dump_log(b->proc, 20);
    h_proc_stop(b->proc, 1000);
    b->proc = NULL;
    return -1;
}

h_broker *h_broker_start(h_env *env, int port)
{
    h_broker *b = xcalloc(1, sizeof *b);
    b->env = env;
    h_env_path(env, "mosquitto.conf", b->conf, sizeof b->conf);
    for (int attempt = 0; attempt < 5; attempt++) {
        b->port = port > 0 ? port : h_free_port();
        if (b->port > 0 && broker_spawn(b) == 0) {
            h_log("mosquitto listening on 127.0.0.1:%d", b->port);
            return b;
        }
        if (port > 0)
            h_sleep_ms(100);
    }
    free(b);
    return NULL;
}

void h_broker_stop(h_broker *b)
{
    if (b && b->proc) {
        char st[64];
        int s = h_proc_stop(b->proc, h_scaled(5000));
        h_log("mosquitto stopped: %s", h_status_str(s, st, sizeof st));
        b->proc = NULL;
    }
}

int h_broker_restart(h_broker *b)
{
    h_broker_stop(b);
    for (int attempt = 0; attempt < 20; attempt++) {
        if (broker_spawn(b) == 0) {
            h_log("mosquitto restarted on 127.0.0.1:%d", b->port);
            return 0;
        }
        h_sleep_ms(100);
    }
    return -1;
}

void h_broker_free(h_broker *b)
{
    if (!b)
        return;
    h_broker_stop(b);
    free(b);
}

/* ========================================================================== */
/* the Modbus simulator                                                        */
/* ========================================================================== */

static int sim_spawn(h_sim *s, int port)
{
    char p[16], hu[16], su[16];
    snprintf(p, sizeof p, "%d", port);
    snprintf(hu, sizeof hu, "%d", s->hvac_unit);
    snprintf(su, sizeof su, "%d", s->sensor_unit);
    const char *argv[] = {MODBUS_SIM_BIN, "--tcp", p, "--hvac-unit", hu, "--sensor-unit", su, NULL};
    s->proc = h_spawn(s->env, s->name, argv);
    if (!s->proc)
        return -1;
    int got = h_proc_listening_port(s->proc, h_scaled(5000));
    if (got <= 0 || (port > 0 && got != port)) {
        h_log("%s: no LISTENING line (got port %d, wanted %d)", s->name, got, port);
        h_proc_dump_log(s->proc, 20);
        h_proc_stop(s->proc, 1000);
        s->proc = NULL;
        return -1;
    }
    s->port = got;
    h_log("%s listening on 127.0.0.1:%d (hvac unit %d, sensor unit %d)", s->name, got, s->hvac_unit,
          s->sensor_unit);
    return 0;
}

h_sim *h_sim_start(h_env *env, const char *name, int port, int hvac_unit, int sensor_unit)
{
    h_sim *s = xcalloc(1, sizeof *s);
    s->env = env;
    snprintf(s->name, sizeof s->name, "%s", name);
    s->hvac_unit = hvac_unit;
    s->sensor_unit = sensor_unit;
    if (sim_spawn(s, port) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

int h_sim_stop(h_sim *s)
{
    if (!s || !s->proc)
        return -1;
    int st = h_proc_stop(s->proc, h_scaled(3000));
    s->proc = NULL;
    return st;
}

int h_sim_restart(h_sim *s)
{
    h_sim_stop(s);
    for (int attempt = 0; attempt < 20; attempt++) {
        if (sim_spawn(s, s->port) == 0)
            return 0;
        h_sleep_ms(100);
    }
    return -1;
}

void h_sim_free(h_sim *s)
{
    if (!s)
        return;
    h_sim_stop(s);
    free(s);
}

static int modbus_write(int port, int unit, int addr, int kind, int value)
{
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", port);
    if (!ctx)
        return -1;
    int rc = -1;
    modbus_set_response_timeout(ctx, 1, 0);
    if (modbus_set_slave(ctx, unit) == 0 && modbus_connect(ctx) == 0) {
        rc = kind == 0 ? modbus_write_bit(ctx, addr, value) : modbus_write_register(ctx, addr, (uint16_t)value);
        rc = rc == 1 ? 0 : -1;
        if (rc != 0)
            h_log("modbus write %s %d:%d@%d failed: %s", kind == 0 ? "coil" : "register", unit, addr, port,
                  modbus_strerror(errno));
        modbus_close(ctx);
    }
    modbus_free(ctx);
    return rc;
}

int h_modbus_read_holding(int port, int unit, int addr, int n, uint16_t *out)
{
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", port);
    if (!ctx)
        return -1;
    int rc = -1;
    modbus_set_response_timeout(ctx, 1, 0);
    if (modbus_set_slave(ctx, unit) == 0 && modbus_connect(ctx) == 0) {
        rc = modbus_read_registers(ctx, addr, n, out) == n ? 0 : -1;
        if (rc != 0)
            h_log("modbus read %d:%d+%d@%d failed: %s", unit, addr, n, port, modbus_strerror(errno));
        modbus_close(ctx);
    }
    modbus_free(ctx);
    return rc;
}

int h_modbus_write_coil(int port, int unit, int addr, bool value)
{
    return modbus_write(port, unit, addr, 0, value ? 1 : 0);
}

int h_modbus_write_register(int port, int unit, int addr, uint16_t value)
{
    return modbus_write(port, unit, addr, 1, value);
}

/* ========================================================================== */
/* ccgw                                                                        */
/* ========================================================================== */

typedef struct sbuf {
    char *buf;
    size_t len, cap;
} sbuf;

static void sb_add(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *s, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(s->buf ? s->buf + s->len : NULL, s->buf ? s->cap - s->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (s->buf && s->len + (size_t)n < s->cap) {
            s->len += (size_t)n;
            return;
        }
        size_t ncap = (s->cap ? s->cap : 1024);
        while (ncap <= s->len + (size_t)n)
            ncap *= 2;
        char *nb = realloc(s->buf, ncap);
        if (!nb)
            abort();
        s->buf = nb;
        s->cap = ncap;
    }
}

static void gw_device_common(sbuf *s, const char *id, const char *cls, int port, int unit,
                             const h_gw_opts *o)
{
    sb_add(s,
           "        - id: %s\n"
           "          class: %s\n"
           "          transport: tcp\n"
           "          host: 127.0.0.1\n"
           "          port: %d\n"
           "          unit_id: %d\n"
           "          poll_interval_ms: %d\n"
           "          timeout_ms: %d\n"
           "          retries: %d\n"
           "          offline_after: %d\n",
           id, cls, port, unit, o->poll_ms > 0 ? o->poll_ms : 500,
           o->timeout_ms > 0 ? o->timeout_ms : 300,
           o->retries > 0 ? o->retries : (o->retries < 0 ? 0 : 1),
           o->offline_after > 0 ? o->offline_after : 3);
}

int h_gw_write_config(h_env *env, const char *file, const h_gw_opts *o, char *path, size_t len)
{
    sbuf s = {0};
    char data_dir[PATH_MAX];
    h_env_path(env, "data", data_dir, sizeof data_dir);
    mkdir(data_dir, 0755);

    sb_add(&s,
           "# written by tests/integration/harness.c\n"
           "gateway:\n"
           "  site: %s\n"
           "  id: %s\n"
           "  log_level: %s\n"
           "  plugin_dirs: [\"%s\"]\n"
           "  data_dir: \"%s\"\n"
           "\n"
           "mqtt:\n"
           "  host: 127.0.0.1\n"
           "  port: %d\n",
           o->site ? o->site : "hq", o->gateway_id ? o->gateway_id : "gw1",
           o->log_level ? o->log_level : "info", CCGW_PLUGIN_DIR, data_dir, o->mqtt_port);
    if (o->keepalive_s > 0)
        sb_add(&s, "  keepalive_s: %d\n", o->keepalive_s);
    if (o->reconnect_max_ms > 0)
        sb_add(&s, "  reconnect:\n    min_ms: 100\n    max_ms: %d\n", o->reconnect_max_ms);
    sb_add(&s,
           "\n"
           "instances:\n"
           "  - id: %s\n"
           "    plugin: modbus\n"
           "    options:\n"
           "      devices:\n",
           o->instance_id ? o->instance_id : "equipment-room");
    if (o->hvac_port > 0) {
        gw_device_common(&s, "room1-ac1", "hvac", o->hvac_port, o->hvac_unit > 0 ? o->hvac_unit : 1, o);
        /* the register map of config/demo.yaml */
        sb_add(&s, "%s",
               "          points:\n"
               "            - {name: supply_air.temperature, table: input, address: 0, type: int16, scale: 0.1, unit: Cel}\n"
               "            - {name: return_air.temperature, table: input, address: 1, type: int16, scale: 0.1, unit: Cel}\n"
               "            - {name: humidity, table: input, address: 2, type: uint16, scale: 0.1, unit: \"%RH\"}\n"
               "            - {name: power, table: input, address: 3, type: float32, word_order: big, unit: W}\n"
               "            - {name: run_time, table: input, address: 5, type: uint32, word_order: big, unit: s}\n"
               "            - {name: setpoint.cooling, table: holding, address: 0, type: int16, scale: 0.1, unit: Cel, writable: true, min: 16, max: 32}\n"
               "            - {name: setpoint.humidity, table: holding, address: 1, type: uint16, scale: 0.1, unit: \"%RH\", writable: true, min: 30, max: 70}\n"
               "            - {name: mode, table: holding, address: 2, type: uint16, enum: [off, cool, heat, dry, fan], publish: state, writable: true}\n"
               "            - name: status\n"
               "              table: holding\n"
               "              address: 3\n"
               "              type: bitfield\n"
               "              publish: none\n"
               "              bits:\n"
               "                - {bit: 0, name: status.running}\n"
               "                - {bit: 1, name: status.fault}\n"
               "                - {bit: 2, name: filter_alarm, publish: state}\n"
               "                - {bit: 3, name: high_temperature, publish: state, alarm: {code: high_temperature, severity: major, message: \"Return air temperature high\"}}\n"
               "            - {name: test.force_fault, table: holding, address: 10, type: bool, publish: none, writable: true}\n"
               "            - {name: run, table: coil, address: 0, type: bool, publish: none, writable: true}\n"
               "            - {name: running, table: discrete, address: 0, type: bool, publish: state}\n"
               "            - {name: fault, table: discrete, address: 1, type: bool, publish: state, alarm: {code: fault, severity: major, message: \"Air conditioner fault\"}}\n"
               "          commands:\n"
               "            - {name: hvac.start, point: run, value: 1, doc: \"Start the air conditioner.\"}\n"
               "            - {name: hvac.stop, point: run, value: 0, doc: \"Stop the air conditioner.\"}\n"
               "            - {name: hvac.set_setpoint, point: setpoint.cooling, doc: \"Cooling setpoint, 16..32 Cel.\"}\n");
    }
    if (o->env_port > 0) {
        gw_device_common(&s, "room1-th1", "env", o->env_port, o->env_unit > 0 ? o->env_unit : 2, o);
        sb_add(&s, "%s",
               "          points:\n"
               "            - {name: temperature, table: input, address: 0, type: int16, scale: 0.1, unit: Cel}\n"
               "            - {name: humidity, table: input, address: 1, type: uint16, scale: 0.1, unit: \"%RH\"}\n"
               "            - {name: temperature.float, table: input, address: 2, type: float32, word_order: little, unit: Cel}\n"
               "            - {name: water_leak, table: discrete, address: 0, type: bool, alarm: {code: water_leak, severity: critical, message: \"Water leak detected\"}}\n"
               "            - {name: smoke, table: discrete, address: 1, type: bool, alarm: {code: smoke, severity: critical, message: \"Smoke detected\"}}\n"
               "            - {name: test.force_water_leak, table: holding, address: 10, type: bool, publish: none, writable: true}\n"
               "            - {name: test.force_smoke, table: holding, address: 11, type: bool, publish: none, writable: true}\n");
    }
    char p[PATH_MAX];
    h_env_path(env, file, p, sizeof p);
    int rc = h_write_file(p, s.buf);
    free(s.buf);
    if (path)
        snprintf(path, len, "%s", p);
    return rc;
}

int h_broker_and_watcher(h_env *env, h_broker **b, h_mqtt **s)
{
    *b = env ? h_broker_start(env, 0) : NULL;
    *s = *b ? h_mqtt_new((*b)->port, "watcher") : NULL;
    if (!*s || h_mqtt_sub(*s, H_PREFIX "/#", 1) != 0) {
        h_log("broker or watcher did not start");
        return -1;
    }
    return 0;
}

h_proc *h_gw_start_yaml(h_env *env, const char *yaml, char *path, size_t len, int64_t *t0)
{
    char own[PATH_MAX];
    if (!path) {
        path = own;
        len = sizeof own;
    }
    h_env_path(env, "ccgw.yaml", path, len);
    if (h_write_file(path, yaml) != 0)
        return NULL;
    if (t0)
        *t0 = h_now_ms();
    return h_gw_start(env, path);
}

void h_rig_teardown(h_env *env, h_broker *b, h_mqtt *s, h_proc *gw, h_proc *const *peers, size_t n_peers)
{
    if (gw)
        h_proc_stop(gw, 8000);
    for (size_t i = 0; i < n_peers; i++)
        if (peers[i])
            h_proc_stop(peers[i], 3000);
    h_mqtt_free(s);
    h_broker_free(b);
    h_env_free(env);
}

h_proc *h_gw_start(h_env *env, const char *config_path)
{
    const char *argv[] = {CCGW_BIN, "--config", config_path, NULL};
    return h_spawn(env, "ccgw", argv);
}

/* ========================================================================== */
/* MQTT v5 client                                                              */
/* ========================================================================== */

#define H_ACK_RING 512

struct h_mqtt {
    struct mosquitto *m;
    char id[96];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    h_msg **msgs;
    size_t n, cap;
    bool conn_done, connected;
    int connack_rc;
    int acks[H_ACK_RING]; /* mids of PUBACKs and SUBACKs */
    int ack_rc[H_ACK_RING];
    size_t nacks;
    bool loop_started;
};

static int g_mqtt_lib_refs;
static pthread_mutex_t g_mqtt_lib_mu = PTHREAD_MUTEX_INITIALIZER;

static void cond_deadline(struct timespec *ts, int timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags, const mosquitto_property *props)
{
    h_mqtt *c = obj;
    pthread_mutex_lock(&c->mu);
    c->conn_done = true;
    c->connack_rc = rc;
    c->connected = rc == 0;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc, const mosquitto_property *props)
{
    h_mqtt *c = obj;
    pthread_mutex_lock(&c->mu);
    c->connected = false;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void add_ack(h_mqtt *c, int mid, int rc)
{
    pthread_mutex_lock(&c->mu);
    c->acks[c->nacks % H_ACK_RING] = mid;
    c->ack_rc[c->nacks % H_ACK_RING] = rc;
    c->nacks++;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void on_publish(struct mosquitto *m, void *obj, int mid, int reason, const mosquitto_property *props)
{
    add_ack(obj, mid, reason);
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int qos_count, const int *granted,
                         const mosquitto_property *props)
{
    add_ack(obj, mid, qos_count > 0 ? granted[0] : 0x80);
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    h_mqtt *c = obj;
    h_msg *hm = xcalloc(1, sizeof *hm);
    hm->t_ms = h_now_ms();
    hm->topic = xstrdup(msg->topic);
    hm->len = msg->payloadlen;
    hm->payload = xcalloc(1, (size_t)msg->payloadlen + 1);
    if (msg->payloadlen > 0)
        memcpy(hm->payload, msg->payload, (size_t)msg->payloadlen);
    hm->qos = msg->qos;
    hm->retain = msg->retain;
    char *rt = NULL;
    if (mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &rt, false))
        hm->response_topic = rt;
    void *cd = NULL;
    uint16_t cdl = 0;
    if (mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &cd, &cdl, false)) {
        hm->corr = cd;
        hm->corr_len = cdl;
    }
    if (hm->len > 0) {
        json_error_t err;
        hm->json = json_loadb(hm->payload, (size_t)hm->len, JSON_DECODE_ANY, &err);
    }
    if (verbose())
        h_log("%s <- %s%s %.*s", c->id, hm->topic, hm->retain ? " (retained)" : "", hm->len > 600 ? 600 : hm->len,
              hm->payload);
    pthread_mutex_lock(&c->mu);
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 256;
        h_msg **nm = realloc(c->msgs, ncap * sizeof *nm);
        if (!nm)
            abort();
        c->msgs = nm;
        c->cap = ncap;
    }
    hm->index = c->n;
    c->msgs[c->n++] = hm;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

h_mqtt *h_mqtt_new(int port, const char *client_id)
{
    static unsigned counter;
    install_cleanup();
    pthread_mutex_lock(&g_mqtt_lib_mu);
    if (g_mqtt_lib_refs++ == 0)
        mosquitto_lib_init();
    pthread_mutex_unlock(&g_mqtt_lib_mu);

    h_mqtt *c = xcalloc(1, sizeof *c);
    snprintf(c->id, sizeof c->id, "it-%s-%d-%u", client_id ? client_id : "c", (int)getpid(), ++counter);
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);

    c->m = mosquitto_new(c->id, true, c);
    if (!c->m)
        goto fail;
    mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_int_option(c->m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_reconnect_delay_set(c->m, 1, 1, false);
    mosquitto_connect_v5_callback_set(c->m, on_connect);
    mosquitto_disconnect_v5_callback_set(c->m, on_disconnect);
    mosquitto_message_v5_callback_set(c->m, on_message);
    mosquitto_subscribe_v5_callback_set(c->m, on_subscribe);
    mosquitto_publish_v5_callback_set(c->m, on_publish);
    int rc = mosquitto_connect_bind_v5(c->m, "127.0.0.1", port, 30, NULL, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        h_log("mqtt %s: connect to port %d: %s", c->id, port, mosquitto_strerror(rc));
        goto fail;
    }
    if (mosquitto_loop_start(c->m) != MOSQ_ERR_SUCCESS)
        goto fail;
    c->loop_started = true;
    struct timespec dl;
    cond_deadline(&dl, h_scaled(5000));
    pthread_mutex_lock(&c->mu);
    while (!c->conn_done) {
        if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) == ETIMEDOUT)
            break;
    }
    bool ok = c->connected;
    int crc = c->connack_rc;
    pthread_mutex_unlock(&c->mu);
    if (!ok) {
        h_log("mqtt %s: no CONNACK from port %d (rc %d)", c->id, port, crc);
        goto fail;
    }
    return c;
fail:
    h_mqtt_free(c);
    return NULL;
}

static bool wait_ack(h_mqtt *c, int mid, int timeout_ms, int *rc)
{
    struct timespec dl;
    cond_deadline(&dl, timeout_ms);
    pthread_mutex_lock(&c->mu);
    for (;;) {
        size_t lo = c->nacks > H_ACK_RING ? c->nacks - H_ACK_RING : 0;
        for (size_t i = lo; i < c->nacks; i++) {
            if (c->acks[i % H_ACK_RING] == mid) {
                if (rc)
                    *rc = c->ack_rc[i % H_ACK_RING];
                pthread_mutex_unlock(&c->mu);
                return true;
            }
        }
        if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&c->mu);
    return false;
}

int h_mqtt_sub(h_mqtt *c, const char *filter, int qos)
{
    int mid = 0, granted = 0;
    int rc = mosquitto_subscribe_v5(c->m, &mid, filter, qos, MQTT_SUB_OPT_RETAIN_AS_PUBLISHED, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        h_log("mqtt %s: subscribe %s: %s", c->id, filter, mosquitto_strerror(rc));
        return -1;
    }
    if (!wait_ack(c, mid, h_scaled(5000), &granted) || granted >= 0x80) {
        h_log("mqtt %s: no SUBACK for %s (granted 0x%x)", c->id, filter, (unsigned)granted);
        return -1;
    }
    return 0;
}

size_t h_mqtt_mark(h_mqtt *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

static bool topic_matches(const char *filter, const char *topic)
{
    bool res = false;
    if (strcmp(filter, topic) == 0)
        return true;
    if (mosquitto_topic_matches_sub(filter, topic, &res) != MOSQ_ERR_SUCCESS)
        return false;
    return res;
}

const h_msg *h_mqtt_wait(h_mqtt *c, size_t from, const char *filter, h_pred_fn pred, const void *ud,
                         int timeout_ms)
{
    struct timespec dl;
    cond_deadline(&dl, timeout_ms);
    size_t i = from;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (i < c->n) {
            h_msg *m = c->msgs[i++];
            pthread_mutex_unlock(&c->mu); /* messages are immutable once listed */
            if (topic_matches(filter, m->topic) && (!pred || pred(m, ud)))
                return m;
            pthread_mutex_lock(&c->mu);
        }
        if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) == ETIMEDOUT && i >= c->n)
            break;
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static bool pred_pattern(const h_msg *m, const void *ud)
{
    const json_t *pattern = ud;
    if (!pattern)
        return true;
    return m->json && h_json_match(pattern, m->json);
}

const h_msg *h_mqtt_wait_match(h_mqtt *c, size_t from, const char *filter, const char *pattern,
                               int timeout_ms)
{
    json_t *pat = NULL;
    if (pattern) {
        json_error_t err;
        pat = json_loads(pattern, JSON_DECODE_ANY, &err);
        if (!pat) {
            h_log("harness: bad JSON pattern '%s': %s", pattern, err.text);
            abort();
        }
    }
    const h_msg *m = h_mqtt_wait(c, from, filter, pred_pattern, pat, timeout_ms);
    json_decref(pat);
    return m;
}

size_t h_mqtt_collect(h_mqtt *c, size_t from, const char *filter, h_pred_fn pred, const void *ud,
                      const h_msg **out, size_t max)
{
    size_t n = h_mqtt_mark(c), k = 0;
    for (size_t i = from; i < n; i++) {
        pthread_mutex_lock(&c->mu);
        const h_msg *m = c->msgs[i];
        pthread_mutex_unlock(&c->mu);
        if (topic_matches(filter, m->topic) && (!pred || pred(m, ud))) {
            if (k < max && out)
                out[k] = m;
            k++;
        }
    }
    return k;
}

int h_mqtt_pub(h_mqtt *c, const char *topic, const void *payload, int len, int qos, bool retain,
               const char *resp_topic, const void *corr, int corr_len)
{
    mosquitto_property *props = NULL;
    if (resp_topic && mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, resp_topic) != 0)
        goto fail;
    if (corr && mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, corr, (uint16_t)corr_len) != 0)
        goto fail;
    int mid = 0;
    int rc = mosquitto_publish_v5(c->m, &mid, topic, len, payload, qos, retain, props);
    mosquitto_property_free_all(&props);
    if (rc != MOSQ_ERR_SUCCESS) {
        h_log("mqtt %s: publish %s: %s", c->id, topic, mosquitto_strerror(rc));
        return -1;
    }
    if (qos > 0 && !wait_ack(c, mid, h_scaled(5000), NULL)) {
        h_log("mqtt %s: no PUBACK for %s", c->id, topic);
        return -1;
    }
    return 0;
fail:
    mosquitto_property_free_all(&props);
    return -1;
}

bool h_mqtt_connected(h_mqtt *c)
{
    pthread_mutex_lock(&c->mu);
    bool r = c->connected;
    pthread_mutex_unlock(&c->mu);
    return r;
}

void h_mqtt_dump(h_mqtt *c, size_t from, const char *filter, int max)
{
    size_t n = h_mqtt_mark(c);
    size_t total = h_mqtt_collect(c, from, filter, NULL, NULL, NULL, 0);
    fprintf(stderr, "----- %zu message(s) received on '%s' since #%zu (client %s, %zu in all)%s -----\n",
            total, filter, from, c->id, n, total > (size_t)max ? ", the last ones:" : "");
    size_t skip = total > (size_t)max ? total - (size_t)max : 0, k = 0;
    for (size_t i = from; i < n; i++) {
        pthread_mutex_lock(&c->mu);
        const h_msg *m = c->msgs[i];
        pthread_mutex_unlock(&c->mu);
        if (!topic_matches(filter, m->topic) || k++ < skip)
            continue;
        fprintf(stderr, "  #%zu +%lldms %s%s%s%s: %.*s\n", m->index, (long long)(m->t_ms - g_t0), m->topic,
                m->retain ? " [retained]" : "", m->response_topic ? " [response-topic " : "",
                m->response_topic ? m->response_topic : "", m->len > 1000 ? 1000 : m->len, m->payload);
    }
    fprintf(stderr, "----- end of messages -----\n");
}

void h_mqtt_free(h_mqtt *c)
{
    if (!c)
        return;
    if (c->m) {
        mosquitto_disconnect_v5(c->m, 0, NULL);
        if (c->loop_started)
            mosquitto_loop_stop(c->m, false);
        mosquitto_destroy(c->m);
    }
    for (size_t i = 0; i < c->n; i++) {
        h_msg *m = c->msgs[i];
        free(m->topic);
        free(m->payload);
        free(m->response_topic);
        free(m->corr);
        json_decref(m->json);
        free(m);
    }
    free(c->msgs);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
    pthread_mutex_lock(&g_mqtt_lib_mu);
    if (--g_mqtt_lib_refs == 0)
        mosquitto_lib_cleanup();
    pthread_mutex_unlock(&g_mqtt_lib_mu);
}

/* ========================================================================== */
/* JSON                                                                        */
/* ========================================================================== */

bool h_json_match(const json_t *pattern, const json_t *value)
{
    if (!pattern)
        return true;
    if (!value)
        return false;
    if (json_is_object(pattern)) {
        if (!json_is_object(value))
            return false;
        const char *key;
        json_t *pv;
        json_object_foreach((json_t *)pattern, key, pv)
        {
            if (!h_json_match(pv, json_object_get(value, key)))
                return false;
        }
        return true;
    }
    if (json_is_number(pattern))
        return json_is_number(value) && json_number_value(pattern) == json_number_value(value);
    return json_equal((json_t *)pattern, (json_t *)value) != 0;
}

bool h_json_num(const json_t *obj, const char *key, double *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_number(v))
        return false;
    *out = json_number_value(v);
    return true;
}

json_t *h_json_get(const json_t *obj, ...)
{
    va_list ap;
    va_start(ap, obj);
    json_t *cur = (json_t *)obj;
    const char *k;
    while (cur && (k = va_arg(ap, const char *)) != NULL)
        cur = json_object_get(cur, k);
    va_end(ap);
    return cur;
}

const char *h_json_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

bool h_json_str_is(const json_t *obj, const char *key, const char *want)
{
    const char *v = h_json_str(obj, key);
    return v && want && strcmp(v, want) == 0;
}

bool h_ts_valid(const char *ts, int max_skew_s)
{
    /* YYYY-MM-DDTHH:MM:SS.mmmZ */
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (!ts || strlen(ts) != sizeof shape - 1)
        return false;
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        if (shape[i] == 'd' ? (ts[i] < '0' || ts[i] > '9') : ts[i] != shape[i])
            return false;
    }
    struct tm tm = {0};
    tm.tm_year = atoi(ts) - 1900;
    tm.tm_mon = atoi(ts + 5) - 1;
    tm.tm_mday = atoi(ts + 8);
    tm.tm_hour = atoi(ts + 11);
    tm.tm_min = atoi(ts + 14);
    tm.tm_sec = atoi(ts + 17);
    if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return false;
    time_t t = timegm(&tm);
    time_t now = time(NULL);
    return max_skew_s <= 0 || llabs((long long)(t - now)) <= max_skew_s;
}

bool h_boot_valid(const char *boot)
{
    if (!boot || strlen(boot) != 16)
        return false;
    for (int i = 0; i < 16; i++) {
        char ch = boot[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')))
            return false;
    }
    return true;
}

static bool str_is(const json_t *j, const char *key, const char *want, char *why, size_t whylen)
{
    const char *v = h_json_str(j, key);
    if (want && (!v || strcmp(v, want) != 0)) {
        snprintf(why, whylen, "\"%s\" is %s, expected \"%s\"", key,
                 v ? v : h_json_dump(json_object_get(j, key)), want);
        return false;
    }
    return true;
}

bool h_envelope_ok(const json_t *j, const char *site, const char *cls, const char *device,
                   const char *instance, const char *boot, char *why, size_t whylen)
{
    if (!json_is_object(j)) {
        snprintf(why, whylen, "payload is not a JSON object");
        return false;
    }
    const char *ts = h_json_str(j, "ts");
    if (!h_ts_valid(ts, 120)) {
        snprintf(why, whylen, "\"ts\" %s is not YYYY-MM-DDTHH:MM:SS.mmmZ within 120 s of now",
                 ts ? ts : "(missing)");
        return false;
    }
    if (!str_is(j, "site", site, why, whylen) || !str_is(j, "class", cls, why, whylen) ||
        !str_is(j, "device", device, why, whylen) || !str_is(j, "instance", instance, why, whylen))
        return false;
    const char *b = h_json_str(j, "boot");
    if (!h_boot_valid(b)) {
        snprintf(why, whylen, "\"boot\" %s is not 16 hex digits", b ? b : "(missing)");
        return false;
    }
    if (boot && strcmp(b, boot) != 0) {
        snprintf(why, whylen, "\"boot\" %s differs from this run's %s", b, boot);
        return false;
    }
    json_t *seq = json_object_get(j, "seq");
    if (!json_is_integer(seq) || json_integer_value(seq) < 1) {
        snprintf(why, whylen, "\"seq\" %s is not an integer >= 1", h_json_dump(seq));
        return false;
    }
    return true;
}

const char *h_json_dump(const json_t *j)
{
    static _Thread_local char buf[2048];
    if (!j) {
        snprintf(buf, sizeof buf, "(missing)");
        return buf;
    }
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    snprintf(buf, sizeof buf, "%s", s ? s : "(?)");
    free(s);
    return buf;
}

/* ========================================================================== */
/* assertions                                                                  */
/* ========================================================================== */

void h_fail_report(const char *file, int line, const char *fmt, ...)
{
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n[it] FAILED at %s:%d: %s\n", file, line, msg);
    if (h_current_env) {
        for (size_t i = 0; i < h_current_env->nprocs; i++) {
            h_proc *p = h_current_env->procs[i];
            char st[64];
            fprintf(stderr, "[it] process %s (pid %d): %s\n", p->name, (int)p->pid,
                    h_proc_alive(p) ? "running" : h_status_str(p->status, st, sizeof st));
        }
        h_env_dump_logs(h_current_env, 40);
    }
    fflush(stderr);
}

const h_msg *h_expect_match_at(const char *file, int line, h_mqtt *c, size_t from,
                               const char *filter, const char *pattern, int timeout_ms)
{
    int64_t t0 = h_now_ms();
    const h_msg *m = h_mqtt_wait_match(c, from, filter, pattern, timeout_ms);
    if (m)
        return m;
    h_mqtt_dump(c, from, filter, 12);
    h_fail_report(file, line, "no message on '%s' matching %s within %d ms (waited %lld ms)", filter,
                  pattern ? pattern : "(any)", timeout_ms, (long long)(h_now_ms() - t0));
    _fail(file, line);
    return NULL;
}

const h_msg *h_expect_pred_at(const char *file, int line, h_mqtt *c, size_t from,
                              const char *filter, h_pred_fn pred, const void *ud,
                              const char *what, int timeout_ms)
{
    int64_t t0 = h_now_ms();
    const h_msg *m = h_mqtt_wait(c, from, filter, pred, ud, timeout_ms);
    if (m)
        return m;
    h_mqtt_dump(c, from, filter, 12);
    h_fail_report(file, line, "no message on '%s' where %s within %d ms (waited %lld ms)", filter, what,
                  timeout_ms, (long long)(h_now_ms() - t0));
    _fail(file, line);
    return NULL;
}

/* ========================================================================== */
/* the usual rig                                                               */
/* ========================================================================== */

int h_world_start(h_world *w, const char *name, int n_sims, const h_gw_opts *opts)
{
    memset(w, 0, sizeof *w);
    w->env = h_env_new(name);
    h_current_env = w->env;
    w->broker = h_broker_start(w->env, 0);
    if (!w->broker) {
        h_log("%s: cannot start mosquitto", name);
        return -1;
    }
    w->sub = h_mqtt_new(w->broker->port, name);
    if (!w->sub || h_mqtt_sub(w->sub, H_PREFIX "/#", 1) != 0) {
        h_log("%s: cannot subscribe", name);
        return -1;
    }
    if (opts)
        w->opts = *opts;
    w->opts.mqtt_port = w->broker->port;
    if (n_sims >= 2) {
        w->sim = h_sim_start(w->env, "sim-hvac", 0, 1, 0);
        w->sim2 = h_sim_start(w->env, "sim-env", 0, 0, 2);
        if (!w->sim || !w->sim2)
            return -1;
        w->opts.hvac_port = w->sim->port;
        w->opts.env_port = w->sim2->port;
    } else if (n_sims == 1) {
        w->sim = h_sim_start(w->env, "sim", 0, 1, 2);
        if (!w->sim)
            return -1;
        w->opts.hvac_port = w->sim->port;
        w->opts.env_port = w->sim->port;
    }
    if (h_gw_write_config(w->env, "ccgw.yaml", &w->opts, w->config, sizeof w->config) != 0)
        return -1;
    w->t_gw_start = h_now_ms();
    w->gw = h_gw_start(w->env, w->config);
    return w->gw ? 0 : -1;
}

void h_world_stop(h_world *w)
{
    if (!w->env)
        return;
    if (w->gw && h_proc_alive(w->gw)) {
        char st[64];
        int s = h_proc_stop(w->gw, h_scaled(8000));
        h_log("ccgw stopped: %s", h_status_str(s, st, sizeof st));
    }
    h_mqtt_free(w->sub);
    h_sim_free(w->sim);
    h_sim_free(w->sim2);
    h_broker_free(w->broker);
    h_env_free(w->env);
    memset(w, 0, sizeof *w);
}

int h_left_ms(int64_t since, int budget_ms)
{
    int64_t left = since + h_scaled(budget_ms) - h_now_ms();
    return left > 0 ? (int)left : 0;
}
