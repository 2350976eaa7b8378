/* metrics - see metrics.h. */
#include "fdlow.h"
#include "metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "bus.h"
#include "ccgw_version.h"
#include "command.h"
#include "gateway.h"
#include "http_server.h"
#include "instance.h"
#include "jobq.h"
#include "mqtt_north.h"
#include "spool.h"
#include "supervisor.h"

/* Label values: escape backslash, quote and newline. */
static void label(FILE *f, const char *v)
{
    fputc('"', f);
    for (const char *p = v ? v : ""; *p; p++) {
        if (*p == '\\' || *p == '"')
            fputc('\\', f), fputc(*p, f);
        else if (*p == '\n')
            fputs("\\n", f);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge(FILE *f, const char *name, const char *help, double v)
{
    head(f, name, "gauge", help);
    fprintf(f, "%s %.17g\n", name, v);
}

static void counter(FILE *f, const char *name, const char *help, uint64_t v)
{
    head(f, name, "counter", help);
    fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

static void instances(FILE *f, ccgw_gateway_t *gw)
{
    head(f, "ccgw_events_in_total", "counter", "Messages emitted by each plugin instance, per kind.");
    for (size_t i = 0; i < gw->n_instances; i++) {
        ccgw_instance_t *in = gw->instances[i];
        for (int k = 0; k < CCGW_KIND__COUNT; k++) {
            fputs("ccgw_events_in_total{instance=", f);
            label(f, in->cfg->id);
            fputs(",kind=", f);
            label(f, ccgw_kind_name((ccgw_kind_t)k));
            fprintf(f, "} %llu\n", (unsigned long long)atomic_load(&in->emitted[k]));
        }
    }
    head(f, "ccgw_events_rejected_total", "counter",
         "Messages of each plugin instance the bus refused (queue full), per kind.");
    for (size_t i = 0; i < gw->n_instances; i++) {
        ccgw_instance_t *in = gw->instances[i];
        for (int k = 0; k < CCGW_KIND__COUNT; k++) {
            fputs("ccgw_events_rejected_total{instance=", f);
            label(f, in->cfg->id);
            fputs(",kind=", f);
            label(f, ccgw_kind_name((ccgw_kind_t)k));
            fprintf(f, "} %llu\n", (unsigned long long)atomic_load(&in->dropped[k]));
        }
    }
    head(f, "ccgw_instance_state", "gauge", "1 for the current run state of each instance.");
    for (size_t i = 0; i < gw->n_instances; i++) {
        ccgw_instance_t *in = gw->instances[i];
        pthread_mutex_lock(&in->lock);
        ccgw_run_state_t st = in->run_state;
        ccgw_health_t h = in->health;
        size_t nd = in->n_devices;
        pthread_mutex_unlock(&in->lock);
        fputs("ccgw_instance_state{instance=", f);
        label(f, in->cfg->id);
        fputs(",plugin=", f);
        label(f, in->cfg->plugin);
        fputs(",state=", f);
        label(f, ccgw_run_state_name(st));
        fputs(",health=", f);
        label(f, h == CCGW_HEALTH_OK ? "ok" : h == CCGW_HEALTH_DEGRADED ? "degraded" : "failed");
        fputs("} 1\n", f);
        fputs("ccgw_instance_devices{instance=", f);
        label(f, in->cfg->id);
        fprintf(f, "} %zu\n", nd);
    }
    static const struct { const char *name, *type, *help; } qm[] = {
        {"ccgw_plugin_queue_jobs", "gauge", "Jobs waiting in each plugin job queue (ccgw/jobq.h)."},
        {"ccgw_plugin_queue_capacity", "gauge", "Capacity of each plugin job queue."},
        {"ccgw_plugin_queue_refused_total", "counter", "Jobs refused because the plugin job queue was full."},
    };
    for (int m = 0; m < 3; m++) { /* one family at a time: the text format wants them grouped */
        head(f, qm[m].name, qm[m].type, qm[m].help);
        for (size_t i = 0; i < gw->n_instances; i++) {
            ccgw_instance_t *in = gw->instances[i];
            pthread_mutex_lock(&in->lock);
            for (const ccgw_jobq_t *q = in->jobqs; q; q = ccgw_jobq_next(q)) {
                ccgw_jobq_stats_t st;
                ccgw_jobq_stats(q, &st);
                uint64_t v = m == 0 ? st.jobs : m == 1 ? st.capacity : st.refused;
                fputs(qm[m].name, f);
                fputs("{instance=", f);
                label(f, in->cfg->id);
                fputs(",queue=", f);
                label(f, st.name);
                fprintf(f, "} %llu\n", (unsigned long long)v);
            }
            pthread_mutex_unlock(&in->lock);
        }
    }
    head(f, "ccgw_commands_total", "counter",
         "Commands routed to each instance: in, and answered ok, failed or timeout.");
    for (size_t i = 0; i < gw->n_instances; i++) {
        ccgw_instance_t *in = gw->instances[i];
        const char *res[] = {"in", "ok", "failed", "timeout"};
        uint64_t v[] = {atomic_load(&in->cmds_in), atomic_load(&in->cmds_ok), atomic_load(&in->cmds_failed),
                        atomic_load(&in->cmds_timeout)};
        for (int r = 0; r < 4; r++) {
            fputs("ccgw_commands_total{instance=", f);
            label(f, in->cfg->id);
            fputs(",result=", f);
            label(f, res[r]);
            fprintf(f, "} %llu\n", (unsigned long long)v[r]);
        }
    }
}

static void latency(FILE *f)
{
    ccgw_cmd_latency_t l;
    ccgw_command_latency(&l);
    head(f, "ccgw_command_duration_seconds", "histogram",
         "Time from dispatch to reply of commands answered by plugins (timeouts included).");
    uint64_t cum = 0;
    for (int i = 0; i < CCGW_CMD_LAT_BUCKETS; i++) {
        cum += l.buckets[i];
        if (i < CCGW_CMD_LAT_BUCKETS - 1)
            fprintf(f, "ccgw_command_duration_seconds_bucket{le=\"%g\"} %llu\n", ccgw_cmd_lat_bounds_ms[i] / 1000.0,
                    (unsigned long long)cum);
        else
            fprintf(f, "ccgw_command_duration_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    fprintf(f, "ccgw_command_duration_seconds_sum %.3f\n", (double)l.sum_ms / 1000.0);
    fprintf(f, "ccgw_command_duration_seconds_count %llu\n", (unsigned long long)cum);
}

static void bus(FILE *f, ccgw_gateway_t *gw)
{
    ccgw_bus_stats_t s;
    ccgw_bus_get_stats(gw->bus, &s);
    head(f, "ccgw_events_out_total", "counter", "Messages handed to the north side (MQTT), per kind.");
    for (int k = 0; k < CCGW_KIND__COUNT; k++)
        fprintf(f, "ccgw_events_out_total{kind=\"%s\"} %llu\n", ccgw_kind_name((ccgw_kind_t)k),
                (unsigned long long)s.published[k]);
    head(f, "ccgw_bus_pushed_total", "counter", "Messages that entered the bus, per kind.");
    for (int k = 0; k < CCGW_KIND__COUNT; k++)
        fprintf(f, "ccgw_bus_pushed_total{kind=\"%s\"} %llu\n", ccgw_kind_name((ccgw_kind_t)k),
                (unsigned long long)s.pushed[k]);
    head(f, "ccgw_bus_dropped_total", "counter",
         "Messages dropped by the bus, per reason (full: queue at its limit; offline: refused while disconnected) and kind.");
    for (int k = 0; k < CCGW_KIND__COUNT; k++)
        fprintf(f, "ccgw_bus_dropped_total{reason=\"full\",kind=\"%s\"} %llu\n", ccgw_kind_name((ccgw_kind_t)k),
                (unsigned long long)s.dropped_full[k]);
    for (int k = 0; k < CCGW_KIND__COUNT; k++)
        fprintf(f, "ccgw_bus_dropped_total{reason=\"offline\",kind=\"%s\"} %llu\n", ccgw_kind_name((ccgw_kind_t)k),
                (unsigned long long)s.dropped_offline[k]);
    gauge(f, "ccgw_bus_queue_depth", "Messages in the north queue now.", (double)s.depth);
    gauge(f, "ccgw_bus_queue_max_depth", "Most messages the north queue held since start.", (double)s.max_depth);
    gauge(f, "ccgw_bus_queue_limit", "Bound of the north queue (gateway.queue_size).", (double)s.limit);
    gauge(f, "ccgw_bus_retained_entries", "Topics in the retained cache.", (double)s.retained_entries);
    counter(f, "ccgw_bus_superseded_total", "Retained messages skipped because a newer one was published.",
            s.superseded);
    counter(f, "ccgw_bus_coalesced_total", "Retained updates coalesced while the queue was full.", s.coalesced);
    counter(f, "ccgw_bus_snapshots_total", "Full republishes of the retained cache (one per MQTT connect).",
            s.snapshots);
}

static void mqtt(FILE *f, ccgw_gateway_t *gw)
{
    ccgw_mqtt_stats_t m = {0};
    if (gw->mqtt)
        ccgw_mqtt_get_stats(gw->mqtt, &m);
    gauge(f, "ccgw_mqtt_enabled", "1 when the MQTT north side is configured.", gw->mqtt ? 1 : 0);
    gauge(f, "ccgw_mqtt_connected", "1 while connected to the broker.", m.connected ? 1 : 0);
    counter(f, "ccgw_mqtt_connects_total", "Successful connections to the broker.", m.connects);
    counter(f, "ccgw_mqtt_disconnects_total", "Connections lost or closed.", m.disconnects);
    gauge(f, "ccgw_mqtt_inflight", "Publishes waiting for the broker's acknowledgement.", (double)m.inflight);
    counter(f, "ccgw_mqtt_commands_in_total", "Messages received on the command topics.", m.commands_in);
}

static void low_fds(FILE *f)
{
    ccgw_fdlow_stats_t s;
    ccgw_fdlow_get_stats(&s);
    gauge(f, "ccgw_fd_low_reserve", "Descriptors below FD_SETSIZE held for libraries that wait with select().",
          (double)s.reserve);
    counter(f, "ccgw_fd_low_moved_total", "Descriptors moved below FD_SETSIZE for such a library (ccgw/fd.h).",
            s.moved);
    counter(f, "ccgw_fd_low_refused_total", "Descriptors above FD_SETSIZE refused: the low reserve was empty.",
            s.refused);
}

static void http(FILE *f, ccgw_gateway_t *gw)
{
    ccgw_http_server_stats_t s = {0};
    if (gw->http)
        ccgw_http_server_get_stats(gw->http, &s);
    gauge(f, "ccgw_ws_clients", "WebSocket clients connected now.", (double)s.clients);
    counter(f, "ccgw_ws_clients_total", "WebSocket clients accepted since start.", s.clients_total);
    counter(f, "ccgw_ws_clients_refused_total", "WebSocket clients refused (authentication, max_clients).",
            s.clients_refused);
    counter(f, "ccgw_ws_clients_slow_closed_total", "WebSocket clients closed because they could not keep up.",
            s.clients_slow_closed);
    counter(f, "ccgw_ws_frames_out_total", "WebSocket frames written.", s.frames_out);
    counter(f, "ccgw_ws_msgs_out_total", "Messages written in WebSocket frames.", s.msgs_out);
    counter(f, "ccgw_ws_dropped_telemetry_total", "Telemetry dropped from full client queues (oldest first).",
            s.dropped_telemetry);
    counter(f, "ccgw_ws_coalesced_state_total", "State messages replaced by a newer one still queued.",
            s.coalesced_state);
    gauge(f, "ccgw_ws_inbox_depth", "Messages waiting for the WebSocket service thread.", (double)s.inbox_depth);
    counter(f, "ccgw_ws_inbox_dropped_total", "Messages the WebSocket hand-off queue dropped.", s.inbox_dropped);
    gauge(f, "ccgw_ws_queued_bytes", "Live message bytes in all WebSocket client queues.", (double)s.queued_bytes);
    gauge(f, "ccgw_ws_queue_limit_bytes", "Each WebSocket client's live queue limit now (budget share).",
          (double)s.queue_limit_bytes);
    gauge(f, "ccgw_ws_queue_budget_bytes", "http.queue_budget_bytes (0 = none).", (double)s.queue_budget_bytes);
    gauge(f, "ccgw_ws_sub_groups", "Distinct WebSocket subscription sets (matched once per message).",
          (double)s.sub_groups);
    counter(f, "ccgw_ws_frames_reused_total", "Batch frames written to another client without rebuilding.",
            s.frames_reused);
    counter(f, "ccgw_http_requests_total", "HTTP requests answered.", s.http_requests);
    counter(f, "ccgw_http_errors_total", "HTTP requests answered 4xx or 5xx.", s.http_errors);
    counter(f, "ccgw_ws_commands_in_total", "Commands received over WebSocket and HTTP.", s.commands_in);
}

/* The spool (spool.c), supervision (supervisor.c) and reloads (reload.c). */
static void lose_nothing(FILE *f, ccgw_gateway_t *gw, const ccgw_supervisor_stats_t *sv)
{
    ccgw_spool_t *sp = ccgw_bus_spool(gw->bus);
    gauge(f, "ccgw_spool_enabled", "1 when events and alarms go through the crash-safe spool.", sp ? 1 : 0);
    if (sp) {
        ccgw_spool_stats_t st;
        ccgw_spool_get_stats(sp, &st);
        gauge(f, "ccgw_spool_bytes", "Bytes in the spool's segments.", (double)st.bytes);
        gauge(f, "ccgw_spool_limit_bytes", "gateway.spool.max_bytes.", (double)gw->cfg->spool.max_bytes);
        gauge(f, "ccgw_spool_pending", "Records appended and not yet acknowledged by the broker.", (double)st.pending);
        gauge(f, "ccgw_spool_full", "1 while the spool is at its limit (alarm spool_full).", st.full ? 1 : 0);
        counter(f, "ccgw_spool_appended_total", "Records appended since start.", st.appended);
        counter(f, "ccgw_spool_delivered_total", "Records the broker acknowledged since start.", st.delivered);
        counter(f, "ccgw_spool_dropped_telemetry_total", "Telemetry dropped or refused at the limit.",
                st.dropped_telemetry);
        counter(f, "ccgw_spool_refused_full_total", "Events and alarms refused (CCGW_EFULL) at the limit.",
                st.refused_full);
        counter(f, "ccgw_spool_expired_total", "Records deleted undelivered after max_age_s.", st.expired);
        gauge(f, "ccgw_spool_replayed_at_start", "Records left by the previous run, replayed.",
              (double)st.replayed_at_start);
        gauge(f, "ccgw_spool_corrupt_regions", "Damaged regions found and moved aside at start.",
              (double)st.corrupt_regions);
        counter(f, "ccgw_spool_fsyncs_total", "fsyncs of the spool.", st.fsyncs);
    }
    counter(f, "ccgw_instance_restarts_total", "Instance restarts by the supervisor.", sv->restarts);
    counter(f, "ccgw_instance_failures_total", "Instance failures seen by the supervisor.", sv->failures);
    counter(f, "ccgw_instance_hangs_total", "Instances found hung (missed heartbeats).", sv->hangs);
    gauge(f, "ccgw_instances_quarantined", "Instances quarantined now.", (double)sv->quarantined);
    gauge(f, "ccgw_instances_backoff", "Instances waiting for a restart now.", (double)sv->backoff);
    head(f, "ccgw_reloads_total", "counter", "Configuration reloads (SIGHUP, POST /api/v1/reload), by result.");
    fprintf(f, "ccgw_reloads_total{result=\"ok\"} %llu\n", (unsigned long long)atomic_load(&gw->reloads_ok));
    fprintf(f, "ccgw_reloads_total{result=\"rejected\"} %llu\n",
            (unsigned long long)atomic_load(&gw->reloads_rejected));
}

char *ccgw_metrics_render(struct ccgw_gateway *gw, size_t *len)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f)
        return NULL;
    head(f, "ccgw_info", "gauge", "Version, boot id, site and gateway id of this gateway.");
    fputs("ccgw_info{version=", f);
    label(f, CCGW_VERSION);
    fputs(",boot=", f);
    label(f, gw->boot);
    fputs(",site=", f);
    label(f, gw->cfg->site);
    fputs(",gateway=", f);
    label(f, gw->cfg->gateway_id);
    fputs("} 1\n", f);
    uint64_t now = ccgw_now_ms();
    gauge(f, "ccgw_uptime_seconds", "Seconds since the gateway started.",
          gw->started_ms && now >= gw->started_ms ? (double)(now - gw->started_ms) / 1000.0 : 0);
    ccgw_supervisor_stats_t sv;
    pthread_mutex_lock(&gw->life_lock); /* reload changes the instance list */
    instances(f, gw);
    ccgw_supervisor_stats(gw, &sv);
    pthread_mutex_unlock(&gw->life_lock);
    lose_nothing(f, gw, &sv);
    latency(f);
    bus(f, gw);
    mqtt(f, gw);
    low_fds(f);
    http(f, gw);
    counter(f, "ccgw_audit_records_total", "Audit records (commands, acknowledgements, refusals).",
            ccgw_audit_count(gw->audit));
    counter(f, "ccgw_audit_write_errors_total", "Audit lines that could not be written to the file.",
            ccgw_audit_write_errors(gw->audit));
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    if (len)
        *len = n;
    return buf;
}
