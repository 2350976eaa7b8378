/*
 * isapi_term.c - one worker thread per terminal: the alertStream (HTTP
 * Digest, multipart parsed incrementally, heartbeats, reconnect with
 * exponential backoff), publishing onto the `door` class, and the door
 * commands (PUT /ISAPI/AccessControl/RemoteControl/door/N).
 *
 * The worker owns a curl multi handle with the stream and at most one PUT.
 * It sleeps in curl_multi_poll() with two extra fds: the terminal's eventfd
 * (stop) and its job queue's (ccgw/jobq.h: a queued door command).
 * Threads: the worker calls only the SDK's thread-safe calls (emit calls,
 * ccgw_cmd_reply_*, ccgw_instance_health, ccgw_log).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "isapi_plugin.h"

#define INST(t) ((t)->isapi->inst)

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool stopping(isapi_term_t *t)
{
    pthread_mutex_lock(&t->lock);
    bool s = t->stop;
    pthread_mutex_unlock(&t->lock);
    return s;
}

static void wake(isapi_term_t *t)
{
    uint64_t one = 1;
    ssize_t w = write(t->wake_fd, &one, sizeof one);
    (void)w;
}

/* ---- health ---------------------------------------------------------------- */

static void health_update(isapi_t *d)
{
    pthread_mutex_lock(&d->lock);
    size_t off = 0;
    const char *first = NULL;
    for (size_t i = 0; i < d->n_terms; i++) {
        if (d->terms[i].offline_h) {
            if (!first)
                first = d->terms[i].id;
            off++;
        }
    }
    char reason[sizeof d->health_reason];
    reason[0] = '\0';
    if (off)
        snprintf(reason, sizeof reason, "%zu of %zu door terminals offline (%s%s)", off,
                 d->n_terms, first, off > 1 ? ", ..." : "");
    ccgw_health_t h = off ? CCGW_HEALTH_DEGRADED : CCGW_HEALTH_OK;
    if (h != d->health || strcmp(reason, d->health_reason) != 0) {
        d->health = h;
        snprintf(d->health_reason, sizeof d->health_reason, "%s", reason);
        ccgw_instance_health(d->inst, h, reason[0] ? reason : NULL);
    }
    pthread_mutex_unlock(&d->lock);
}

static void set_health_flag(isapi_term_t *t, bool offline)
{
    pthread_mutex_lock(&t->isapi->lock);
    bool changed = t->offline_h != offline;
    t->offline_h = offline;
    pthread_mutex_unlock(&t->isapi->lock);
    if (changed)
        health_update(t->isapi);
}

static size_t state_attrs(isapi_term_t *t, ccgw_value_t *v)
{
    size_t n = 0;
    if (t->door_state)
        v[n++] = CCGW_V_STRING("door", t->door_state);
    if (t->lock_state)
        v[n++] = CCGW_V_STRING("lock", t->lock_state);
    if (t->mode_state)
        v[n++] = CCGW_V_STRING("mode", t->mode_state);
    return n;
}

static void go_online(isapi_term_t *t)
{
    if (t->online != 1) {
        ccgw_value_t v[3];
        size_t n = state_attrs(t, v);
        ccgw_device_set_state(t->dev, true, NULL, v, n);
        CCGW_INFO(INST(t), "isapi-door: %s (%s) online: alertStream open", t->id, t->base_url);
    }
    t->online = 1;
    t->reason[0] = '\0';
    set_health_flag(t, false);
}

static void go_offline(isapi_term_t *t, const char *reason)
{
    if (t->online != 0 || strcmp(t->reason, reason) != 0) {
        CCGW_WARN(INST(t), "isapi-door: %s (%s) offline: %s", t->id, t->base_url, reason);
        ccgw_device_set_online(t->dev, false, reason);
        snprintf(t->reason, sizeof t->reason, "%s", reason);
    }
    t->online = 0;
    set_health_flag(t, true);
}

/* ---- publishing events -------------------------------------------------------- */

static void publish_event(isapi_term_t *t, const isapi_event_t *ev)
{
    bool this_door = ev->door_no <= 0 || ev->door_no == t->door;
    bool changed = false;
    if (this_door) {
        if (ev->door && (!t->door_state || strcmp(t->door_state, ev->door) != 0)) {
            t->door_state = ev->door;
            changed = true;
        }
        if (ev->lock && (!t->lock_state || strcmp(t->lock_state, ev->lock) != 0)) {
            t->lock_state = ev->lock;
            changed = true;
        }
        if (ev->mode && (!t->mode_state || strcmp(t->mode_state, ev->mode) != 0)) {
            t->mode_state = ev->mode;
            changed = true;
        }
    }
    if (changed) {
        ccgw_value_t v[3];
        size_t n = state_attrs(t, v);
        ccgw_device_update_state(t->dev, v, n);
    }
    if (ev->type) {
        ccgw_value_t data[12];
        size_t n = 0;
        bool access = strncmp(ev->type, "access.", 7) == 0;
        if (access) {
            data[n++] = CCGW_V_STRING("person_id", ev->person_id);
            data[n++] = CCGW_V_STRING("name", ev->name);
            data[n++] = ev->method ? CCGW_V_STRING("method", ev->method) : CCGW_V_NULL("method");
            if (ev->card_no[0])
                data[n++] = CCGW_V_STRING("card_no", ev->card_no);
            if (ev->verify_mode[0])
                data[n++] = CCGW_V_STRING("verify_mode", ev->verify_mode);
        }
        data[n++] = CCGW_V_INT("door", ev->door_no > 0 ? ev->door_no : t->door);
        data[n++] = CCGW_V_STRING("event_id", ev->event_id);
        data[n++] = CCGW_V_INT("major", ev->major);
        data[n++] = CCGW_V_INT("minor", ev->minor);
        if (ev->label)
            data[n++] = CCGW_V_STRING("code", ev->label);
        if (ev->date_time[0])
            data[n++] = CCGW_V_STRING("device_time", ev->date_time);
        ccgw_device_event(t->dev, ev->type, data, n);
        t->published++;
    }
    if (ev->alarm_raise) {
        ccgw_value_t data[] = {CCGW_V_STRING("event_id", ev->event_id),
                               CCGW_V_INT("door", ev->door_no > 0 ? ev->door_no : t->door)};
        const char *msg = "Door opened without a valid access (forced)";
        ccgw_severity_t sev = CCGW_SEV_CRITICAL;
        if (strcmp(ev->alarm_raise, "held_open") == 0) {
            msg = "Door held open too long";
            sev = CCGW_SEV_MAJOR;
            t->alarm_held = true;
        } else if (strcmp(ev->alarm_raise, "tamper") == 0) {
            msg = "Door terminal or card reader tampered with";
            t->alarm_tamper = true;
        } else {
            t->alarm_forced = true;
        }
        ccgw_alarm_raise(t->dev, ev->alarm_raise, sev, msg, data, CCGW_COUNT(data));
    }
    if (ev->alarm_clear && this_door) {
        /* cleared whether or not this run raised them: an alarm may be
         * left active from before a restart (clearing an inactive alarm
         * publishes nothing) */
        if (strcmp(ev->alarm_clear, "door") == 0) {
            ccgw_alarm_clear(t->dev, "forced", "door closed");
            ccgw_alarm_clear(t->dev, "held_open", "door closed");
            t->alarm_forced = t->alarm_held = false;
        } else if (strcmp(ev->alarm_clear, "tamper") == 0) {
            ccgw_alarm_clear(t->dev, "tamper", "tamper resumed");
            t->alarm_tamper = false;
        }
    }
}

static void on_part(const isapi_part_t *p, void *ud)
{
    isapi_term_t *t = ud;
    t->last_alive_ms = mono_ms();
    if (p->flags & ISAPI_PART_SKIPPED)
        return; /* picture */
    if (p->flags & ISAPI_PART_OVERSIZE) {
        CCGW_WARN(INST(t), "isapi-door: %s: dropped a %zu-byte %s part (max_part_bytes %zu)", t->id,
                  p->len, p->content_type[0] ? p->content_type : "untyped", t->max_part);
        return;
    }
    isapi_event_t ev;
    isapi_kind_t k = isapi_event_from_part(p->content_type, p->body, p->len, &ev);
    if (k == ISAPI_K_INVALID) {
        CCGW_DEBUG(INST(t), "isapi-door: %s: unparseable %zu-byte part", t->id, p->len);
        return;
    }
    if (k != ISAPI_K_ACCESS)
        return;
    if (isapi_seen_check(&t->seen, ev.event_id)) {
        t->duplicates++;
        CCGW_DEBUG(INST(t), "isapi-door: %s: event %s already published (replay)", t->id, ev.event_id);
        return;
    }
    if (!ev.type && !ev.door && !ev.lock && !ev.mode && !ev.alarm_clear)
        CCGW_DEBUG(INST(t), "isapi-door: %s: unmapped event major %d minor 0x%x", t->id, ev.major,
                   (unsigned)ev.minor);
    publish_event(t, &ev);
}

/* ---- the stream ------------------------------------------------------------------- */

static size_t stream_header(char *buf, size_t size, size_t n, void *ud)
{
    isapi_term_t *t = ud;
    size_t len = size * n;
    if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        t->stream_status = 0;
        return len;
    }
    if (len <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
        long code = 0;
        curl_easy_getinfo((CURL *)t->stream, CURLINFO_RESPONSE_CODE, &code);
        t->stream_status = code;
        if (code == 200 && !t->stream_ok) {
            t->stream_ok = true;
            t->last_alive_ms = mono_ms();
            t->stream_since_ms = t->last_alive_ms;
            t->stream_reason[0] = '\0';
            go_online(t);
        }
        return len;
    }
    if (len > 13 && strncasecmp(buf, "Content-Type:", 13) == 0) {
        char val[256];
        size_t vl = len - 13 < sizeof val - 1 ? len - 13 : sizeof val - 1;
        memcpy(val, buf + 13, vl);
        val[vl] = '\0';
        char b[ISAPI_BOUNDARY_MAX + 1];
        if (isapi_boundary_from_ctype(val, b, sizeof b) == 0) {
            isapi_stream_free(&t->parser);
            if (isapi_stream_init(&t->parser, b, t->max_part, on_part, t) != 0)
                isapi_stream_init(&t->parser, NULL, t->max_part, on_part, t);
        }
    }
    return len;
}

static size_t stream_write(char *buf, size_t size, size_t n, void *ud)
{
    isapi_term_t *t = ud;
    size_t len = size * n;
    if (t->stream_ok)
        isapi_stream_feed(&t->parser, buf, len);
    if (stopping(t))
        return 0; /* abort the transfer */
    return len;
}

static void set_common(isapi_term_t *t, CURL *e, const char *url)
{
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_DIGEST);
    curl_easy_setopt(e, CURLOPT_USERNAME, t->username);
    curl_easy_setopt(e, CURLOPT_PASSWORD, t->password);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)t->timeout_ms);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "ccgw-isapi-door/1.0");
    if (t->tls && !t->tls_verify) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
}

static void stream_start(isapi_term_t *t)
{
    char url[400];
    snprintf(url, sizeof url, "%s/ISAPI/Event/notification/alertStream", t->base_url);
    CURL *e = curl_easy_init();
    if (!e) {
        t->next_connect_ms = mono_ms() + 1000;
        return;
    }
    set_common(t, e, url);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, stream_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, stream_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    isapi_stream_free(&t->parser);
    isapi_stream_init(&t->parser, NULL, t->max_part, on_part, t);
    t->stream_ok = false;
    t->stream_status = 0;
    t->last_alive_ms = mono_ms();
    t->stream = e;
    curl_multi_add_handle((CURLM *)t->multi, e);
}

static void stream_close(isapi_term_t *t)
{
    if (!t->stream)
        return;
    curl_multi_remove_handle((CURLM *)t->multi, (CURL *)t->stream);
    curl_easy_cleanup((CURL *)t->stream);
    t->stream = NULL;
    isapi_stream_reset(&t->parser);
}

/* The stream ended (or is declared dead): reason, reconnect schedule. */
static void stream_failed(isapi_term_t *t, const char *reason, bool dead)
{
    bool was_ok = t->stream_ok;
    bool mid_part = isapi_stream_in_part(&t->parser);
    stream_close(t);
    t->stream_ok = false;
    uint64_t now = mono_ms();
    if (was_ok && !dead) {
        /* a stream that was working: reconnect at once (after the backoff
         * when it lived only briefly, so a terminal that keeps hanging up
         * is not hammered), stay online unless reconnecting fails */
        CCGW_INFO(INST(t), "isapi-door: %s: alertStream ended (%s%s); reconnecting", t->id, reason,
                  mid_part ? ", in the middle of a part" : "");
        snprintf(t->stream_reason, sizeof t->stream_reason, "%s", reason);
        if (now - t->stream_since_ms >= ISAPI_STABLE_MS) {
            t->backoff_ms = t->backoff_min_ms;
            t->next_connect_ms = now;
        } else {
            t->next_connect_ms = now + (uint64_t)t->backoff_ms;
            t->backoff_ms = t->backoff_ms * 2 > t->backoff_max_ms ? t->backoff_max_ms : t->backoff_ms * 2;
        }
        return;
    }
    if (dead && was_ok && now - t->stream_since_ms >= ISAPI_STABLE_MS)
        t->backoff_ms = t->backoff_min_ms;
    go_offline(t, reason);
    t->next_connect_ms = now + (uint64_t)t->backoff_ms;
    t->backoff_ms = t->backoff_ms * 2 > t->backoff_max_ms ? t->backoff_max_ms : t->backoff_ms * 2;
}

static void stream_done(isapi_term_t *t, CURLcode rc)
{
    char reason[ISAPI_REASON_LEN];
    long code = t->stream_status;
    if (rc == CURLE_OK || rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR) {
        if (code == 401)
            snprintf(reason, sizeof reason, "401 Unauthorized: wrong username or password");
        else if (code == 403)
            snprintf(reason, sizeof reason, "403 Forbidden: user '%s' may not read the event stream",
                     t->username);
        else if (code != 200 && code != 0)
            snprintf(reason, sizeof reason, "alertStream answered HTTP %ld", code);
        else if (rc == CURLE_OK)
            snprintf(reason, sizeof reason, "alertStream closed by the terminal");
        else
            snprintf(reason, sizeof reason, "alertStream cut: %s", curl_easy_strerror(rc));
    } else if (rc == CURLE_COULDNT_CONNECT) {
        long err = 0;
        curl_easy_getinfo((CURL *)t->stream, CURLINFO_OS_ERRNO, &err);
        snprintf(reason, sizeof reason, "%s",
                 err == ECONNREFUSED ? "connection refused" : "cannot connect");
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        snprintf(reason, sizeof reason, "timeout");
    } else if (rc == CURLE_COULDNT_RESOLVE_HOST) {
        snprintf(reason, sizeof reason, "cannot resolve host %s", t->host);
    } else {
        snprintf(reason, sizeof reason, "%s", curl_easy_strerror(rc));
    }
    stream_failed(t, reason, false);
}

/* ---- commands ------------------------------------------------------------------------ */

static size_t put_write(char *buf, size_t size, size_t n, void *ud)
{
    isapi_term_t *t = ud;
    size_t len = size * n;
    size_t room = sizeof t->put_resp - 1 - t->put_resp_len;
    size_t c = len < room ? len : room;
    memcpy(t->put_resp + t->put_resp_len, buf, c);
    t->put_resp_len += c;
    t->put_resp[t->put_resp_len] = '\0';
    return len;
}

static void job_reply_error(isapi_job_t *job, const char *code, const char *msg)
{
    if (job->cmd)
        ccgw_cmd_reply_error(job->cmd, code, "%s", msg);
}

static void put_start(isapi_term_t *t, isapi_job_t *job)
{
    CURL *e = curl_easy_init();
    if (!e || isapi_door_body(job->isapi_cmd, t->put_body, sizeof t->put_body) < 0) {
        if (e)
            curl_easy_cleanup(e);
        job_reply_error(job, CCGW_CMD_E_DEVICE_ERROR, "cannot build the request");
        free(job);
        return;
    }
    snprintf(t->put_url, sizeof t->put_url, "%s/ISAPI/AccessControl/RemoteControl/door/%d",
             t->base_url, t->door);
    set_common(t, e, t->put_url);
    t->put_headers = curl_slist_append(NULL, "Content-Type: application/xml; charset=\"UTF-8\"");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, (struct curl_slist *)t->put_headers);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->put_body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(t->put_body));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)t->timeout_ms);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, put_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    t->put_resp_len = 0;
    t->put_resp[0] = '\0';
    t->put = e;
    t->put_job = job;
    CCGW_INFO(INST(t), "isapi-door: %s: %s -> RemoteControlDoor %s (door %d)", t->id, job->what,
              job->isapi_cmd, t->door);
    curl_multi_add_handle((CURLM *)t->multi, e);
}

static void put_done(isapi_term_t *t, CURLcode rc)
{
    isapi_job_t *job = t->put_job;
    long http = 0;
    curl_easy_getinfo((CURL *)t->put, CURLINFO_RESPONSE_CODE, &http);
    curl_multi_remove_handle((CURLM *)t->multi, (CURL *)t->put);
    curl_easy_cleanup((CURL *)t->put);
    curl_slist_free_all((struct curl_slist *)t->put_headers);
    t->put = NULL;
    t->put_headers = NULL;
    t->put_job = NULL;

    char msg[512];
    if (rc != CURLE_OK) {
        snprintf(msg, sizeof msg, "terminal %s: %s", t->base_url, curl_easy_strerror(rc));
        CCGW_WARN(INST(t), "isapi-door: %s: %s failed: %s", t->id, job->what, msg);
        job_reply_error(job, rc == CURLE_OPERATION_TIMEDOUT ? CCGW_CMD_E_TIMEOUT : CCGW_CMD_E_DEVICE_ERROR, msg);
        free(job);
        return;
    }
    isapi_status_t st;
    int prc = isapi_parse_status(t->put_resp, t->put_resp_len, &st);
    if (http == 401) {
        snprintf(msg, sizeof msg, "401 Unauthorized: wrong username or password");
    } else if (prc == 0 && st.status_code == 1) {
        msg[0] = '\0';
    } else if (prc == 0) {
        snprintf(msg, sizeof msg, "terminal refused: statusCode %d (%s), subStatusCode %s%s%s",
                 st.status_code, st.status_string[0] ? st.status_string : "?",
                 st.sub_status[0] ? st.sub_status : "?", st.error_msg[0] ? ": " : "", st.error_msg);
    } else if (http == 200) {
        msg[0] = '\0'; /* no ResponseStatus body: HTTP 200 is success */
    } else {
        snprintf(msg, sizeof msg, "terminal answered HTTP %ld", http);
    }
    if (msg[0]) {
        CCGW_WARN(INST(t), "isapi-door: %s: %s: %s", t->id, job->what, msg);
        job_reply_error(job, CCGW_CMD_E_DEVICE_ERROR, msg);
        free(job);
        return;
    }
    if (job->duration_s > 0)
        t->relock_at_ms = mono_ms() + (uint64_t)job->duration_s * 1000u;
    else if (strcmp(job->isapi_cmd, "open") != 0)
        t->relock_at_ms = 0;
    if (job->cmd) {
        ccgw_value_t data[3];
        size_t n = 0;
        data[n++] = CCGW_V_INT("door", t->door);
        data[n++] = CCGW_V_STRING("isapi_cmd", job->isapi_cmd);
        if (job->duration_s > 0)
            data[n++] = CCGW_V_INT_U("duration_s", job->duration_s, "s");
        ccgw_cmd_reply_ok(job->cmd, data, n);
    }
    free(job);
}

/* ---- the worker ---------------------------------------------------------------------------- */

static void *worker(void *arg)
{
    isapi_term_t *t = arg;
    CURLM *multi = t->multi;
    t->backoff_ms = t->backoff_min_ms;
    t->next_connect_ms = 0;

    while (!stopping(t)) {
        uint64_t now = mono_ms();
        if (!t->put) {
            isapi_job_t *job = ccgw_jobq_pop(t->jobs);
            if (job) {
                put_start(t, job);
            } else if (t->relock_at_ms && now >= t->relock_at_ms) {
                t->relock_at_ms = 0;
                isapi_job_t *rj = calloc(1, sizeof *rj);
                if (rj) {
                    snprintf(rj->isapi_cmd, sizeof rj->isapi_cmd, "close");
                    snprintf(rj->what, sizeof rj->what, "timed relock");
                    put_start(t, rj);
                }
            }
        }
        if (!t->stream && now >= t->next_connect_ms)
            stream_start(t);
        if (t->stream && mono_ms() > t->last_alive_ms + (uint64_t)t->heartbeat_timeout_s * 1000u) {
            char why[ISAPI_REASON_LEN];
            if (t->stream_ok)
                snprintf(why, sizeof why, "no heartbeat from the terminal for %d s",
                         t->heartbeat_timeout_s);
            else
                snprintf(why, sizeof why, "timeout: no answer to the alertStream request in %d s",
                         t->heartbeat_timeout_s);
            stream_failed(t, why, true);
        }

        int running = 0;
        curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            if (t->stream && m->easy_handle == (CURL *)t->stream)
                stream_done(t, m->data.result);
            else if (t->put && m->easy_handle == (CURL *)t->put)
                put_done(t, m->data.result);
        }
        if (stopping(t))
            break;

        now = mono_ms();
        uint64_t wait = 1000;
        if (!t->stream && t->next_connect_ms > now && t->next_connect_ms - now < wait)
            wait = t->next_connect_ms - now;
        if (!t->stream && t->next_connect_ms <= now)
            wait = 0;
        if (t->relock_at_ms && !t->put)
            wait = t->relock_at_ms > now ? (t->relock_at_ms - now < wait ? t->relock_at_ms - now : wait) : 0;
        /* the job queue's fd is readable while jobs wait: watched only when
         * the worker is free to start one */
        struct curl_waitfd wfd[2] = {{.fd = t->wake_fd, .events = CURL_WAIT_POLLIN},
                                     {.fd = ccgw_jobq_fd(t->jobs), .events = CURL_WAIT_POLLIN}};
        curl_multi_poll(multi, wfd, t->put ? 1 : 2, (int)wait, NULL);
        if (wfd[0].revents) {
            uint64_t v;
            ssize_t r = read(wfd[0].fd, &v, sizeof v);
            (void)r;
        }
    }
    stream_close(t);
    if (t->put) {
        isapi_job_t *job = t->put_job;
        curl_multi_remove_handle(multi, (CURL *)t->put);
        curl_easy_cleanup((CURL *)t->put);
        curl_slist_free_all((struct curl_slist *)t->put_headers);
        t->put = NULL;
        t->put_headers = NULL;
        t->put_job = NULL;
        job_reply_error(job, CCGW_CMD_E_DEVICE_ERROR, "instance stopping");
        free(job);
    }
    return NULL;
}

/* ---- start / stop / enqueue ------------------------------------------------------------------ */

static void refuse_job(void *job, void *why)
{
    job_reply_error(job, CCGW_CMD_E_DEVICE_ERROR, why);
    free(job);
}

static void term_stop(isapi_term_t *t)
{
    if (t->thread_started) {
        pthread_mutex_lock(&t->lock);
        t->stop = true;
        pthread_mutex_unlock(&t->lock);
        ccgw_jobq_close(t->jobs);
        wake(t);
        pthread_join(t->thread, NULL);
        t->thread_started = false;
    }
    ccgw_jobq_free(t->jobs, refuse_job, (void *)"instance stopping");
    t->jobs = NULL;
    if (t->multi) {
        curl_multi_cleanup((CURLM *)t->multi);
        t->multi = NULL;
    }
    isapi_stream_free(&t->parser);
    if (t->wake_fd >= 0) {
        close(t->wake_fd);
        t->wake_fd = -1;
    }
}

int isapi_terms_start(isapi_t *d)
{
    for (size_t i = 0; i < d->n_terms; i++) {
        isapi_term_t *t = &d->terms[i];
        t->stop = false;
        t->jobs = ccgw_jobq_new(d->inst, t->id, ISAPI_QUEUE_LEN);
        t->online = -1;
        t->reason[0] = '\0';
        t->relock_at_ms = 0;
        t->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        t->multi = curl_multi_init();
        bool ok = t->jobs && t->wake_fd >= 0 && t->multi &&
                  isapi_stream_init(&t->parser, NULL, t->max_part, on_part, t) == 0;
        if (!ok || pthread_create(&t->thread, NULL, worker, t) != 0) {
            CCGW_ERROR(d->inst, "isapi-door: cannot start the worker for %s", t->id);
            term_stop(t);
            for (size_t k = 0; k < i; k++)
                term_stop(&d->terms[k]);
            return CCGW_ENOMEM;
        }
        t->thread_started = true;
    }
    return CCGW_OK;
}

void isapi_terms_stop(isapi_t *d)
{
    for (size_t i = 0; i < d->n_terms; i++) {
        isapi_term_t *t = &d->terms[i];
        if (t->thread_started) {
            pthread_mutex_lock(&t->lock);
            t->stop = true;
            pthread_mutex_unlock(&t->lock);
            ccgw_jobq_close(t->jobs);
            wake(t);
        }
    }
    for (size_t i = 0; i < d->n_terms; i++)
        term_stop(&d->terms[i]);
}

int isapi_term_enqueue(isapi_term_t *t, isapi_job_t *job)
{
    return t->thread_started && t->jobs ? ccgw_jobq_push(t->jobs, job) : CCGW_ESTOPPED;
}
