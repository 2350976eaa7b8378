/*
 * sparkline.js - a tiny SVG sparkline for the ccgw dashboard (no dependency).
 * CcgwSpark.svg(points, opts) returns the markup of an <svg> drawing the
 * series points = [[t_ms, value], ...] (oldest first) over the time window
 * [now - windowMs, now]. The caller escapes nothing: only numbers and the
 * escaped label go into the markup.
 */
(function () {
  'use strict';

  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }

  function fmt(v) {
    return Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1);
  }

  function svg(points, opts) {
    opts = opts || {};
    var w = opts.width || 240, h = opts.height || 48, pad = 3;
    var now = opts.now || Date.now();
    var windowMs = opts.windowMs || 3600000;
    var label = opts.label || 'trend';
    var pts = (points || []).filter(function (p) {
      return typeof p[1] === 'number' && isFinite(p[1]) && p[0] >= now - windowMs;
    });
    if (pts.length < 2) {
      return '<svg class="spark spark-empty" viewBox="0 0 ' + w + ' ' + h + '" role="img" aria-label="' +
        esc(label + ': not enough data for a trend yet') + '"><line x1="0" y1="' + (h / 2) + '" x2="' + w +
        '" y2="' + (h / 2) + '" class="spark-none"/></svg>';
    }
    var min = Infinity, max = -Infinity;
    pts.forEach(function (p) { if (p[1] < min) min = p[1]; if (p[1] > max) max = p[1]; });
    var span = max - min;
    if (span < 1e-9) { span = Math.abs(max) * 0.02 || 1; min -= span / 2; max += span / 2; }
    // less than a window of data (page just opened): spread what there is
    var t0 = Math.max(now - windowMs, pts[0][0]);
    var span_t = Math.max(now - t0, 1000);
    var xy = pts.map(function (p) {
      var x = ((p[0] - t0) / span_t) * w;
      var y = pad + (1 - (p[1] - min) / (max - min)) * (h - 2 * pad);
      return x.toFixed(1) + ',' + y.toFixed(1);
    });
    var last = pts[pts.length - 1];
    var lx = ((last[0] - t0) / span_t) * w;
    var ly = pad + (1 - (last[1] - min) / (max - min)) * (h - 2 * pad);
    var desc = label + ' over the last ' + Math.max(1, Math.round(span_t / 60000)) + ' min: min ' + fmt(min) +
      ', max ' + fmt(max) + ', now ' + fmt(last[1]);
    return '<svg class="spark" viewBox="0 0 ' + w + ' ' + h + '" preserveAspectRatio="none" role="img" aria-label="' +
      esc(desc) + '"><title>' + esc(desc) + '</title><polyline class="spark-line" fill="none" points="' +
      xy.join(' ') + '"/><circle class="spark-dot" r="2.5" cx="' + lx.toFixed(1) + '" cy="' + ly.toFixed(1) +
      '"/></svg>';
  }

  window.CcgwSpark = { svg: svg };
})();
