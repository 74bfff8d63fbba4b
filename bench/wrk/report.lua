-- Prints wrk's summary as one JSON line for kubeportal-bench to read.
-- Latencies are in microseconds.
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "KUBEPORTAL_BENCH {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d," ..
    "\"connect_errors\":%d,\"read_errors\":%d,\"write_errors\":%d," ..
    "\"status_errors\":%d,\"timeouts\":%d," ..
    "\"p50_us\":%.0f,\"p90_us\":%.0f,\"p99_us\":%.0f,\"max_us\":%.0f}\n",
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
