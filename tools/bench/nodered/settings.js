/*
 * Node-RED settings for the ccgw benchmark peer (tools/bench/run, row set f).
 * Headless: no editor, no admin API, no HTTP nodes; the flow comes from the
 * flows file given on the command line (a copy of tools/bench/nodered/flows.json
 * in a private userDir); logging at info (start-up and broker connection only,
 * nothing per message); no telemetry, no diagnostics, no projects.
 * The broker's port comes from the environment (BENCH_MQTT_PORT), see flows.json.
 */
module.exports = {
    uiHost: "127.0.0.1",
    uiPort: parseInt(process.env.BENCH_NR_UI_PORT || "0", 10),
    httpAdminRoot: false,
    httpNodeRoot: false,
    disableEditor: true,
    credentialSecret: false,
    flowFilePretty: false,
    telemetry: { enabled: false },
    diagnostics: { enabled: false, ui: false },
    runtimeState: { enabled: false, ui: false },
    externalModules: { autoInstall: false, palette: { allowInstall: false }, modules: { allowInstall: false } },
    editorTheme: { projects: { enabled: false } },
    functionExternalModules: false,
    logging: { console: { level: "info", metrics: false, audit: false } },
    exportGlobalContextKeys: false,
};
