/* modbus-sim: a Modbus TCP and RTU simulator of a precision air conditioner
 * and a temperature/humidity/water/smoke sensor, on libmodbus; or, with
 * --generic N, of N generic devices (unit ids 1..N) for benchmarks at scale.
 *
 * Transport: one poll loop over the TCP listening socket, every TCP client
 * and the serial device. Frames are cut here (MBAP length for TCP, function
 * code + CRC for RTU) rather than by modbus_receive(), because in libmodbus
 * 3.1.6 modbus_receive() blocks for the byte timeout on a partial frame
 * (stalling every other client) and, in RTU mode, drops every request whose
 * unit id is not the context's one slave id, while this simulator answers two.
 * Answers are built and sent by modbus_reply() / modbus_reply_exception(),
 * after modbus_sim_model.c has checked the request against the register map.
 *
 * See tools/sim/README.md and --help.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <modbus.h>

#include "modbus_sim_model.h"

#define PROG "modbus-sim"
#define RTU_SILENCE_MS 50      /* a partial RTU frame older than this is dropped */
#define RTU_RETRY_MS 1000      /* reopen a serial device that hung up */
#define ACCEPT_PAUSE_MS 100    /* after EMFILE */
#define TCP_BUF_SIZE (2 * MODBUS_TCP_MAX_ADU_LENGTH)
#define RTU_BUF_SIZE (2 * MODBUS_RTU_MAX_ADU_LENGTH)

typedef struct {
    const char *bind_addr;
    long tcp_port; /* -1: no TCP */
    const char *rtu_device;
    long baud;
    char parity;
    long data_bits;
    long stop_bits;
    long hvac_unit;
    long sensor_unit;
    long generic;      /* 0, or that many generic devices at units 1..N */
    long generic_regs; /* input registers of each generic device */
    bool unknown_exception;
    uint64_t seed;
    long period_ms;
    long max_clients;
    bool verbose;
    bool debug;
} sim_options;

typedef struct {
    int fd;
    size_t len;
    uint8_t buf[TCP_BUF_SIZE];
} sim_client;

typedef struct {
    sim_options opt;
    sim_device **devices;
    size_t n_devices;
    sim_device *by_unit[256];

    modbus_t *tcp;
    int listen_fd;
    int64_t accept_paused_until;
    sim_client **clients;
    size_t n_clients, cap_clients;

    modbus_t *rtu;
    int rtu_fd;
    int64_t rtu_retry_at;
    int64_t rtu_last_rx;
    size_t rtu_len;
    uint8_t rtu_buf[RTU_BUF_SIZE];

    struct pollfd *pfds;
    size_t cap_pfds;
} sim_server;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_msg(const char *fmt, ...)
{
    va_list ap;
    fputs(PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

/* ---- command line */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: " PROG " [--tcp PORT [--bind ADDR]] [--rtu DEVICE [serial options]] [options]\n"
            "\n"
            "Simulates a precision air conditioner and a temperature/humidity/water/smoke\n"
            "sensor over Modbus TCP and/or RTU (at least one transport is required).\n"
            "\n"
            "Transports:\n"
            "  --tcp PORT            listen on TCP PORT (0 = ephemeral); prints\n"
            "                        'LISTENING tcp ADDR:PORT' on stdout once listening\n"
            "  --bind ADDR           IPv4 address to listen on (default 127.0.0.1)\n"
            "  --max-clients N       TCP clients served at once (default 4096)\n"
            "  --rtu DEVICE          serve Modbus RTU on a serial device or pty; prints\n"
            "                        'LISTENING rtu DEVICE' on stdout once open\n"
            "  --baud N              serial speed (default 9600)\n"
            "  --parity N|E|O        serial parity (default N)\n"
            "  --data-bits 5..8      (default 8)\n"
            "  --stop-bits 1|2       (default 1)\n"
            "\n"
            "Devices:\n"
            "  --hvac-unit N         unit id of the air conditioner (default 1, 0 = disabled)\n"
            "  --sensor-unit N       unit id of the sensor (default 2, 0 = disabled)\n"
            "  --generic N           serve N generic devices (unit ids 1..N, N <= 247)\n"
            "                        instead of the two above: 16 holding registers,\n"
            "                        16 coils, 16 discrete inputs and input registers\n"
            "                        that all move every step\n"
            "  --generic-registers R input registers per generic device (default 64,\n"
            "                        1..1000)\n"
            "  --unknown-unit ignore|exception\n"
            "                        a request for another unit id gets no answer (ignore,\n"
            "                        the default, like a real RTU device) or exception 0x0B\n"
            "                        gateway target device failed to respond (exception)\n"
            "\n"
            "Model:\n"
            "  --seed N              seed of the noise (default 1)\n"
            "  --period-ms N         simulation step in milliseconds (default 1000); values\n"
            "                        drift per step, so a shorter step makes the plant react\n"
            "                        faster; run_time counts real seconds\n"
            "\n"
            "Other:\n"
            "  -v, --verbose         log every request on stderr\n"
            "  --debug               libmodbus debug output (frames) on stdout\n"
            "  -h, --help            this text\n"
            "\n"
            "Register map: tools/sim/README.md. SIGTERM/SIGINT stop the simulator (exit 0).\n");
}

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        return false;
    }
    *out = v;
    return true;
}

enum {
    OPT_TCP = 256,
    OPT_BIND,
    OPT_MAX_CLIENTS,
    OPT_RTU,
    OPT_BAUD,
    OPT_PARITY,
    OPT_DATA_BITS,
    OPT_STOP_BITS,
    OPT_HVAC_UNIT,
    OPT_SENSOR_UNIT,
    OPT_GENERIC,
    OPT_GENERIC_REGS,
    OPT_UNKNOWN_UNIT,
    OPT_SEED,
    OPT_PERIOD_MS,
    OPT_DEBUG,
};

/* Returns -1 to go on, else the exit status. */
static int parse_options(int argc, char **argv, sim_options *o)
{
    static const struct option longopts[] = {
        {"tcp", required_argument, NULL, OPT_TCP},
        {"bind", required_argument, NULL, OPT_BIND},
        {"max-clients", required_argument, NULL, OPT_MAX_CLIENTS},
        {"rtu", required_argument, NULL, OPT_RTU},
        {"baud", required_argument, NULL, OPT_BAUD},
        {"parity", required_argument, NULL, OPT_PARITY},
        {"data-bits", required_argument, NULL, OPT_DATA_BITS},
        {"stop-bits", required_argument, NULL, OPT_STOP_BITS},
        {"hvac-unit", required_argument, NULL, OPT_HVAC_UNIT},
        {"sensor-unit", required_argument, NULL, OPT_SENSOR_UNIT},
        {"generic", required_argument, NULL, OPT_GENERIC},
        {"generic-registers", required_argument, NULL, OPT_GENERIC_REGS},
        {"unknown-unit", required_argument, NULL, OPT_UNKNOWN_UNIT},
        {"seed", required_argument, NULL, OPT_SEED},
        {"period-ms", required_argument, NULL, OPT_PERIOD_MS},
        {"verbose", no_argument, NULL, 'v'},
        {"debug", no_argument, NULL, OPT_DEBUG},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct in_addr ia;
    int c;

    *o = (sim_options){
        .bind_addr = "127.0.0.1",
        .tcp_port = -1,
        .baud = 9600,
        .parity = 'N',
        .data_bits = 8,
        .stop_bits = 1,
        .hvac_unit = 1,
        .sensor_unit = 2,
        .seed = 1,
        .period_ms = 1000,
        .max_clients = 4096,
        .generic_regs = 64,
    };
    bool unit_given = false;

    while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        const char *bad = NULL;
        long v;

        switch (c) {
        case OPT_TCP:
            if (!parse_long(optarg, 0, 65535, &o->tcp_port)) {
                bad = "--tcp needs a port 0..65535";
            }
            break;
        case OPT_BIND:
            o->bind_addr = optarg;
            break;
        case OPT_MAX_CLIENTS:
            if (!parse_long(optarg, 1, 1000000, &o->max_clients)) {
                bad = "--max-clients needs 1..1000000";
            }
            break;
        case OPT_RTU:
            o->rtu_device = optarg;
            break;
        case OPT_BAUD:
            if (!parse_long(optarg, 1, 4000000, &o->baud)) {
                bad = "--baud needs a positive speed";
            }
            break;
        case OPT_PARITY:
            if (strlen(optarg) != 1 || strchr("NEOneo", optarg[0]) == NULL) {
                bad = "--parity needs N, E or O";
            } else {
                o->parity = (char)(optarg[0] & ~0x20); /* upper case */
            }
            break;
        case OPT_DATA_BITS:
            if (!parse_long(optarg, 5, 8, &o->data_bits)) {
                bad = "--data-bits needs 5..8";
            }
            break;
        case OPT_STOP_BITS:
            if (!parse_long(optarg, 1, 2, &o->stop_bits)) {
                bad = "--stop-bits needs 1 or 2";
            }
            break;
        case OPT_HVAC_UNIT:
            if (!parse_long(optarg, 0, 255, &o->hvac_unit)) {
                bad = "--hvac-unit needs 0..255";
            }
            unit_given = true;
            break;
        case OPT_SENSOR_UNIT:
            if (!parse_long(optarg, 0, 255, &o->sensor_unit)) {
                bad = "--sensor-unit needs 0..255";
            }
            unit_given = true;
            break;
        case OPT_GENERIC:
            if (!parse_long(optarg, 1, 247, &o->generic)) {
                bad = "--generic needs 1..247";
            }
            break;
        case OPT_GENERIC_REGS:
            if (!parse_long(optarg, 1, SIM_GENERIC_MAX_INPUT, &o->generic_regs)) {
                bad = "--generic-registers needs 1..1000";
            }
            break;
        case OPT_UNKNOWN_UNIT:
            if (strcmp(optarg, "exception") == 0) {
                o->unknown_exception = true;
            } else if (strcmp(optarg, "ignore") == 0) {
                o->unknown_exception = false;
            } else {
                bad = "--unknown-unit needs ignore or exception";
            }
            break;
        case OPT_SEED:
            if (!parse_long(optarg, 0, LONG_MAX, &v)) {
                bad = "--seed needs a non-negative integer";
            } else {
                o->seed = (uint64_t)v;
            }
            break;
        case OPT_PERIOD_MS:
            if (!parse_long(optarg, 10, 3600000, &o->period_ms)) {
                bad = "--period-ms needs 10..3600000";
            }
            break;
        case 'v':
            o->verbose = true;
            break;
        case OPT_DEBUG:
            o->debug = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
        if (bad != NULL) {
            log_msg("%s (got '%s')", bad, optarg);
            return 2;
        }
    }
    if (optind < argc) {
        log_msg("unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (o->tcp_port < 0 && o->rtu_device == NULL) {
        log_msg("give --tcp PORT and/or --rtu DEVICE (see --help)");
        return 2;
    }
    if (o->generic > 0) {
        if (unit_given) {
            log_msg("--generic replaces --hvac-unit and --sensor-unit");
            return 2;
        }
        o->hvac_unit = 0;
        o->sensor_unit = 0;
    } else if (o->hvac_unit == 0 && o->sensor_unit == 0) {
        log_msg("both devices are disabled");
        return 2;
    }
    if (o->hvac_unit != 0 && o->hvac_unit == o->sensor_unit) {
        log_msg("--hvac-unit and --sensor-unit are both %ld", o->hvac_unit);
        return 2;
    }
    if (o->rtu_device != NULL && (o->hvac_unit > 247 || o->sensor_unit > 247)) {
        log_msg("RTU unit ids are 1..247");
        return 2;
    }
    if (o->tcp_port >= 0 && inet_pton(AF_INET, o->bind_addr, &ia) != 1) {
        log_msg("--bind needs an IPv4 address (got '%s')", o->bind_addr);
        return 2;
    }
    return -1;
}

/* ---- requests */

static sim_device *find_device(sim_server *s, unsigned unit)
{
    return unit < 256 ? s->by_unit[unit] : NULL;
}

static void log_request(const sim_server *s, const char *via, unsigned unit, const uint8_t *pdu,
                        size_t pdu_len, const char *what, int code)
{
    char exc[24] = "";

    if (!s->opt.verbose) {
        return;
    }
    if (code != 0) {
        snprintf(exc, sizeof exc, " 0x%02x", (unsigned)code);
    }
    if (pdu_len >= 5) {
        log_msg("%s unit %u fc 0x%02x addr %u count/value %u: %s%s", via, unit, pdu[0],
                get_be16(pdu + 1), get_be16(pdu + 3), what, exc);
    } else {
        log_msg("%s unit %u fc 0x%02x: %s%s", via, unit, pdu[0], what, exc);
    }
}

/* Answers one complete request. `req` is the whole ADU (for RTU with its CRC),
 * `pdu_len` the bytes from the function code on (without CRC). Returns -1 when
 * the answer could not be sent. */
static int handle_request(sim_server *s, modbus_t *ctx, bool rtu, const uint8_t *req,
                          size_t pdu_len)
{
    const char *via = rtu ? "rtu" : "tcp";
    const int hdr = modbus_get_header_length(ctx);
    const unsigned unit = req[hdr - 1];
    const uint8_t *pdu = req + hdr;
    size_t need = sim_request_pdu_length(pdu, pdu_len);
    /* What modbus_reply() gets: the request cut to the length its function
     * code implies (extra bytes in a TCP frame are ignored), RTU CRC kept. */
    int req_len = hdr + (int)(need != 0 && need < pdu_len ? need : pdu_len) + (rtu ? 2 : 0);
    sim_device *dev;
    int code, rc;

    if (rtu && unit == MODBUS_BROADCAST_ADDRESS) {
        /* Broadcast: every device applies a valid write; nobody answers. */
        if (sim_function_writes(pdu[0])) {
            for (size_t i = 0; i < s->n_devices; i++) {
                if (sim_device_check(s->devices[i], pdu, pdu_len) == 0) {
                    sim_device_before_reply(s->devices[i], pdu);
                    modbus_reply(ctx, req, req_len, sim_device_mapping(s->devices[i]));
                    sim_device_after_write(s->devices[i]);
                }
            }
        }
        log_request(s, via, unit, pdu, pdu_len, "broadcast", 0);
        return 0;
    }

    dev = find_device(s, unit);
    if (dev == NULL) {
        if (!s->opt.unknown_exception) {
            log_request(s, via, unit, pdu, pdu_len, "unknown unit, no answer", 0);
            return 0;
        }
        log_request(s, via, unit, pdu, pdu_len, "unknown unit, exception",
                    MODBUS_EXCEPTION_GATEWAY_TARGET);
        return modbus_reply_exception(ctx, req, MODBUS_EXCEPTION_GATEWAY_TARGET) < 0 ? -1 : 0;
    }

    code = sim_device_check(dev, pdu, pdu_len);
    if (code != 0) {
        log_request(s, via, unit, pdu, pdu_len, "exception", code);
        /* Never modbus_reply() for these: its exception path sleeps for the
         * response timeout and flushes the connection. */
        return modbus_reply_exception(ctx, req, (unsigned)code) < 0 ? -1 : 0;
    }
    sim_device_before_reply(dev, pdu);
    rc = modbus_reply(ctx, req, req_len, sim_device_mapping(dev));
    if (sim_function_writes(pdu[0])) {
        sim_device_after_write(dev);
    }
    log_request(s, via, unit, pdu, pdu_len, "ok", 0);
    return rc < 0 ? -1 : 0;
}

/* ---- TCP */

static int tcp_open(sim_server *s)
{
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof sa;
    char addr[INET_ADDRSTRLEN];
    int flags;

    s->tcp = modbus_new_tcp(s->opt.bind_addr, (int)s->opt.tcp_port);
    if (s->tcp == NULL) {
        log_msg("modbus_new_tcp: %s", modbus_strerror(errno));
        return -1;
    }
    modbus_set_debug(s->tcp, s->opt.debug);
    s->listen_fd = modbus_tcp_listen(s->tcp, 1024); /* many clients may connect at once */
    if (s->listen_fd < 0) {
        log_msg("listen on %s:%ld: %s", s->opt.bind_addr, s->opt.tcp_port, strerror(errno));
        return -1;
    }
    flags = fcntl(s->listen_fd, F_GETFL);
    if (flags < 0 || fcntl(s->listen_fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
        getsockname(s->listen_fd, (struct sockaddr *)&sa, &sl) < 0 ||
        inet_ntop(AF_INET, &sa.sin_addr, addr, sizeof addr) == NULL) {
        log_msg("listening socket: %s", strerror(errno));
        return -1;
    }
    printf("LISTENING tcp %s:%u\n", addr, (unsigned)ntohs(sa.sin_port));
    fflush(stdout);
    return 0;
}

static void client_close(sim_server *s, size_t i)
{
    if (s->opt.verbose) {
        log_msg("tcp client fd %d closed", s->clients[i]->fd);
    }
    close(s->clients[i]->fd);
    free(s->clients[i]);
    s->clients[i] = NULL; /* compacted by the caller */
}

static void tcp_accept(sim_server *s, int64_t now)
{
    for (;;) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        int one = 1;
        struct timeval tv = {.tv_sec = 2, .tv_usec = 0};
        sim_client *c;

        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_msg("accept: %s (pausing)", strerror(errno));
                s->accept_paused_until = now + ACCEPT_PAUSE_MS;
            } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                       errno != ECONNABORTED) {
                log_msg("accept: %s", strerror(errno));
            }
            return;
        }
        if (s->n_clients >= (size_t)s->opt.max_clients) {
            log_msg("too many clients (%zu), refusing one", s->n_clients);
            close(fd);
            continue;
        }
        if (s->n_clients == s->cap_clients) {
            size_t cap = s->cap_clients ? 2 * s->cap_clients : 16;
            sim_client **n = realloc(s->clients, cap * sizeof *n);
            if (n == NULL) {
                close(fd);
                return;
            }
            s->clients = n;
            s->cap_clients = cap;
        }
        c = malloc(sizeof *c);
        if (c == NULL) {
            close(fd);
            return;
        }
        /* Replies are single small writes; never let a client that does not
         * read block the loop for long. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        c->fd = fd;
        c->len = 0;
        s->clients[s->n_clients++] = c;
        if (s->opt.verbose) {
            log_msg("tcp client fd %d connected (%zu clients)", fd, s->n_clients);
        }
    }
}

/* Reads what a client sent and answers every complete frame.
 * Returns -1 when the client is to be closed. */
static int tcp_client_read(sim_server *s, sim_client *c)
{
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, MSG_DONTWAIT);
    size_t off = 0;

    if (n == 0) {
        return -1;
    }
    if (n < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    }
    c->len += (size_t)n;
    while (c->len - off >= 7) {
        const uint8_t *f = c->buf + off;
        size_t mbap_len = get_be16(f + 4);
        size_t flen = 6 + mbap_len;

        if (mbap_len < 2 || mbap_len > MODBUS_TCP_MAX_ADU_LENGTH - 6) {
            if (s->opt.verbose) {
                log_msg("tcp client fd %d: bad MBAP length %zu, closing", c->fd, mbap_len);
            }
            return -1;
        }
        if (c->len - off < flen) {
            break;
        }
        if (get_be16(f + 2) == 0) { /* protocol id: Modbus */
            modbus_set_socket(s->tcp, c->fd);
            if (handle_request(s, s->tcp, false, f, mbap_len - 1) < 0) {
                return -1;
            }
        }
        off += flen;
    }
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
    return 0;
}

/* ---- RTU */

static uint16_t crc16_modbus(const uint8_t *p, size_t n)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++) {
            crc = (crc & 1) ? (uint16_t)((crc >> 1) ^ 0xA001) : (uint16_t)(crc >> 1);
        }
    }
    return crc;
}

static int rtu_open(sim_server *s, bool first)
{
    if (s->rtu == NULL) {
        s->rtu = modbus_new_rtu(s->opt.rtu_device, (int)s->opt.baud, s->opt.parity,
                                (int)s->opt.data_bits, (int)s->opt.stop_bits);
        if (s->rtu == NULL) {
            log_msg("modbus_new_rtu %s: %s", s->opt.rtu_device, modbus_strerror(errno));
            return -1;
        }
        modbus_set_debug(s->rtu, s->opt.debug);
    }
    if (modbus_connect(s->rtu) < 0) {
        if (first) {
            log_msg("open %s: %s", s->opt.rtu_device, modbus_strerror(errno));
        }
        return -1;
    }
    s->rtu_fd = modbus_get_socket(s->rtu);
    s->rtu_len = 0;
    if (first) {
        printf("LISTENING rtu %s\n", s->opt.rtu_device);
        fflush(stdout);
    } else {
        log_msg("%s reopened", s->opt.rtu_device);
    }
    return 0;
}

static void rtu_hangup(sim_server *s, int64_t now, const char *why)
{
    log_msg("%s: %s; retrying every %d ms", s->opt.rtu_device, why, RTU_RETRY_MS);
    modbus_close(s->rtu);
    s->rtu_fd = -1;
    s->rtu_len = 0;
    s->rtu_retry_at = now + RTU_RETRY_MS;
}

static void rtu_parse(sim_server *s)
{
    size_t off = 0;

    while (s->rtu_len - off >= 2) {
        const uint8_t *f = s->rtu_buf + off;
        size_t need = sim_request_pdu_length(f + 1, s->rtu_len - off - 1);
        size_t flen = 1 + need + 2;

        if (need == 0) {
            break; /* the length is in bytes not yet here */
        }
        if (flen > MODBUS_RTU_MAX_ADU_LENGTH) {
            off++; /* cannot be a request: resynchronise */
            continue;
        }
        if (s->rtu_len - off < flen) {
            break;
        }
        if (crc16_modbus(f, flen - 2) != (uint16_t)(f[flen - 2] | (f[flen - 1] << 8))) {
            if (s->opt.verbose) {
                log_msg("rtu: bad CRC, skipping a byte");
            }
            off++;
            continue;
        }
        if (handle_request(s, s->rtu, true, f, need) < 0) {
            log_msg("rtu: reply: %s", modbus_strerror(errno));
        }
        off += flen;
    }
    memmove(s->rtu_buf, s->rtu_buf + off, s->rtu_len - off);
    s->rtu_len -= off;
}

static void rtu_read(sim_server *s, int64_t now)
{
    ssize_t n = read(s->rtu_fd, s->rtu_buf + s->rtu_len, sizeof s->rtu_buf - s->rtu_len);

    if (n > 0) {
        s->rtu_len += (size_t)n;
        s->rtu_last_rx = now;
        rtu_parse(s);
        if (s->rtu_len == sizeof s->rtu_buf) {
            s->rtu_len = 0; /* garbage that never framed */
        }
    } else if (n == 0) {
        rtu_hangup(s, now, "end of file");
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        rtu_hangup(s, now, strerror(errno));
    }
}

/* ---- main loop */

static int ensure_pfds(sim_server *s, size_t n)
{
    if (n > s->cap_pfds) {
        size_t cap = n + 16;
        struct pollfd *p = realloc(s->pfds, cap * sizeof *p);
        if (p == NULL) {
            return -1;
        }
        s->pfds = p;
        s->cap_pfds = cap;
    }
    return 0;
}

static int run(sim_server *s, const sigset_t *wait_mask)
{
    int64_t next_step = now_ms() + s->opt.period_ms;

    while (!g_stop) {
        int64_t now = now_ms();
        int64_t deadline;
        struct timespec ts;
        size_t np = 0, first_client;
        bool poll_listen, poll_rtu;
        int rc;

        if (now >= next_step) {
            for (size_t i = 0; i < s->n_devices; i++) {
                sim_device_step(s->devices[i]);
            }
            next_step += s->opt.period_ms;
            if (next_step <= now) { /* fell behind (suspended?): do not burst */
                next_step = now + s->opt.period_ms;
            }
        }
        if (s->opt.rtu_device != NULL && s->rtu_fd < 0 && now >= s->rtu_retry_at) {
            if (rtu_open(s, false) < 0) {
                s->rtu_retry_at = now + RTU_RETRY_MS;
            }
        }
        if (s->rtu_fd >= 0 && s->rtu_len > 0 && now - s->rtu_last_rx >= RTU_SILENCE_MS) {
            if (s->opt.verbose) {
                log_msg("rtu: dropping %zu bytes of an incomplete frame", s->rtu_len);
            }
            s->rtu_len = 0;
        }

        deadline = next_step;
        if (s->rtu_fd >= 0 && s->rtu_len > 0 && s->rtu_last_rx + RTU_SILENCE_MS < deadline) {
            deadline = s->rtu_last_rx + RTU_SILENCE_MS;
        }
        if (s->opt.rtu_device != NULL && s->rtu_fd < 0 && s->rtu_retry_at < deadline) {
            deadline = s->rtu_retry_at;
        }
        poll_listen = s->listen_fd >= 0 && now >= s->accept_paused_until;
        if (s->listen_fd >= 0 && !poll_listen && s->accept_paused_until < deadline) {
            deadline = s->accept_paused_until;
        }
        poll_rtu = s->rtu_fd >= 0;

        if (ensure_pfds(s, 2 + s->n_clients) < 0) {
            log_msg("out of memory");
            return 1;
        }
        if (poll_listen) {
            s->pfds[np++] = (struct pollfd){.fd = s->listen_fd, .events = POLLIN};
        }
        if (poll_rtu) {
            s->pfds[np++] = (struct pollfd){.fd = s->rtu_fd, .events = POLLIN};
        }
        first_client = np;
        for (size_t i = 0; i < s->n_clients; i++) {
            s->pfds[np++] = (struct pollfd){.fd = s->clients[i]->fd, .events = POLLIN};
        }

        if (deadline < now) {
            deadline = now;
        }
        ts.tv_sec = (time_t)((deadline - now) / 1000);
        ts.tv_nsec = (long)((deadline - now) % 1000) * 1000000L;
        rc = ppoll(s->pfds, (nfds_t)np, &ts, wait_mask);
        if (rc < 0) {
            if (errno == EINTR) {
                continue;
            }
            log_msg("ppoll: %s", strerror(errno));
            return 1;
        }
        if (rc == 0) {
            continue;
        }
        now = now_ms();

        /* Clients first: their slots in pfds match s->clients as it was. */
        for (size_t i = 0; i < s->n_clients; i++) {
            short re = s->pfds[first_client + i].revents;
            if ((re & POLLNVAL) ||
                ((re & (POLLIN | POLLHUP | POLLERR)) && tcp_client_read(s, s->clients[i]) < 0)) {
                client_close(s, i);
            }
        }
        {
            size_t k = 0;
            for (size_t i = 0; i < s->n_clients; i++) {
                if (s->clients[i] != NULL) {
                    s->clients[k++] = s->clients[i];
                }
            }
            s->n_clients = k;
        }
        np = 0;
        if (poll_listen) {
            if (s->pfds[np++].revents & POLLIN) {
                tcp_accept(s, now);
            }
        }
        if (poll_rtu) {
            short re = s->pfds[np++].revents;
            if (re & POLLIN) {
                rtu_read(s, now);
            } else if (re & (POLLHUP | POLLERR | POLLNVAL)) {
                rtu_hangup(s, now, "hung up");
            }
        }
    }
    return 0;
}

static void server_free(sim_server *s)
{
    for (size_t i = 0; i < s->n_clients; i++) {
        close(s->clients[i]->fd);
        free(s->clients[i]);
    }
    free(s->clients);
    free(s->pfds);
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
    }
    if (s->tcp != NULL) {
        /* Its socket is whichever client answered last, closed already. */
        modbus_set_socket(s->tcp, -1);
        modbus_free(s->tcp);
    }
    if (s->rtu != NULL) {
        if (s->rtu_fd >= 0) {
            modbus_close(s->rtu); /* restores the serial settings */
        }
        modbus_free(s->rtu);
    }
    for (size_t i = 0; i < s->n_devices; i++) {
        sim_device_free(s->devices[i]);
    }
    free(s->devices);
}

/* Creates the devices the options ask for. -1 when out of memory. */
static int devices_new(sim_server *s)
{
    const sim_options *o = &s->opt;
    size_t n = o->generic > 0 ? (size_t)o->generic : 2;

    s->devices = calloc(n, sizeof *s->devices);
    if (s->devices == NULL) {
        return -1;
    }
    for (long u = 1; u <= o->generic; u++) {
        sim_device *d =
            sim_device_new_generic((int)u, (unsigned)o->generic_regs, o->seed, (unsigned)o->period_ms);
        if (d == NULL) {
            return -1;
        }
        s->devices[s->n_devices++] = d;
    }
    if (o->hvac_unit != 0) {
        sim_device *d = sim_device_new(SIM_KIND_HVAC, (int)o->hvac_unit, o->seed, (unsigned)o->period_ms);
        if (d == NULL) {
            return -1;
        }
        s->devices[s->n_devices++] = d;
    }
    if (o->sensor_unit != 0) {
        sim_device *d =
            sim_device_new(SIM_KIND_SENSOR, (int)o->sensor_unit, o->seed, (unsigned)o->period_ms);
        if (d == NULL) {
            return -1;
        }
        s->devices[s->n_devices++] = d;
    }
    for (size_t i = 0; i < s->n_devices; i++) {
        s->by_unit[sim_device_unit(s->devices[i]) & 0xFF] = s->devices[i];
    }
    return 0;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    sim_server s = {.listen_fd = -1, .rtu_fd = -1};
    struct sigaction sa = {.sa_handler = on_signal};
    sigset_t block, wait_mask;
    int rc;

    rc = parse_options(argc, argv, &s.opt);
    if (rc >= 0) {
        return rc;
    }

    /* SIGINT/SIGTERM are only delivered inside ppoll(): no lost wake-up. */
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &wait_mask);
    sigdelset(&wait_mask, SIGINT);
    sigdelset(&wait_mask, SIGTERM);
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    if (devices_new(&s) < 0) {
        log_msg("out of memory");
        server_free(&s);
        return 1;
    }

    if ((s.opt.tcp_port >= 0 && tcp_open(&s) < 0) ||
        (s.opt.rtu_device != NULL && rtu_open(&s, true) < 0)) {
        server_free(&s);
        return 1;
    }
    if (s.opt.generic > 0) {
        log_msg("%ld generic devices (units 1..%ld, %ld input registers each), unknown units: %s, "
                "step %ld ms, seed %" PRIu64,
                s.opt.generic, s.opt.generic, s.opt.generic_regs,
                s.opt.unknown_exception ? "exception" : "ignored", s.opt.period_ms, s.opt.seed);
    } else {
        log_msg("hvac unit %ld, sensor unit %ld, unknown units: %s, step %ld ms, seed %" PRIu64,
                s.opt.hvac_unit, s.opt.sensor_unit, s.opt.unknown_exception ? "exception" : "ignored",
                s.opt.period_ms, s.opt.seed);
    }

    rc = run(&s, &wait_mask);
    if (rc == 0) {
        log_msg("stopping");
    }
    server_free(&s);
    return rc;
}
