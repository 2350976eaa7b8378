/*
 * fuzz_ccgwctl - libFuzzer target for what ccgwctl does with the gateway's
 * answers (outside input): the renderers of status, devices, one device,
 * alarms and command replies (tables, ages from timestamps, alarm sources
 * from topics, shortest reals), the /ws message handler of `tail` (msg,
 * batch, ack, error) and the parsers of user arguments (CLASS/DEVICE/CODE,
 * alarm topics, key=value / key:=JSON).
 *
 * The first byte picks the target and --json; the rest is the input. Output
 * goes to /dev/null, messages are off. Built only with -DCCGW_FUZZ=ON and clang (ctest
 * fuzz.ccgwctl, label fuzz). Single-threaded.
 */
#define main ccgwctl_main
#include "ccgwctl.c"
#undef main

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        init = true;
        g_quiet = true; /* stderr stays: libFuzzer and the sanitizers report there */
        if (!freopen("/dev/null", "w", stdout))
            return 0;
    }
    if (size < 1)
        return 0;
    unsigned sel = data[0];
    data++;
    size--;

    ctl_opts_t o;
    memset(&o, 0, sizeof o);
    o.json = (sel & 0x80) != 0;
    o.timeout_s = 1;
    snprintf(o.url, sizeof o.url, "http://127.0.0.1:1");

    unsigned what = (sel & 0x7f) % 8;
    if (what >= 6) {
        /* user arguments: a NUL-terminated copy */
        char *s = malloc(size + 1);
        if (!s)
            return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        if (what == 6) {
            char buf[1024], *c, *d, *k, *parts[3];
            (void)parse_alarm_ref(s, buf, sizeof buf, &c, &d, &k);
            (void)split_n(s, buf, sizeof buf, parts, 3);
        } else {
            json_t *args = json_object();
            (void)parse_kv(args, s);
            json_decref(args);
        }
        free(s);
        return 0;
    }
    if (what == 5) {
        tail_ctx_t t;
        memset(&t, 0, sizeof t);
        const char *filters[] = {"ccgw/v1/#", "ccgw/v1/+/ups/#"};
        t.o = &o;
        t.filters = filters;
        t.n_filters = 2;
        t.count = (sel & 0x40) ? 3 : 0;
        t.no_snapshot = (sel & 0x20) != 0;
        tail_handle(&t, (const char *)data, size);
        return 0;
    }

    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!j)
        return 0;
    switch (what) {
    case 0:
        render_status(&o, (sel & 0x40) != 0, j, json_object_get(j, "instances"));
        break;
    case 1:
        (void)render_devices(&o, j, (sel & 0x40) ? "env" : NULL);
        break;
    case 2:
        render_device(&o, "hvac", "ac1", j);
        break;
    case 3:
        (void)render_alarms(&o, j, (sel & 0x40) ? "ups" : NULL);
        break;
    default: {
        http_resp_t r;
        memset(&r, 0, sizeof r);
        r.status = (sel & 0x40) ? 400 : 200;
        r.json = j;
        (void)print_reply(&o, "x/y/z", &r);
        break;
    }
    }
    json_decref(j);
    return 0;
}
