"""Serving under load: concurrency and request-rate sweeps against an OpenAI-compatible server.

One module, one job:
  requests.py  suite samples -> request bodies (images as data URIs or as references)
  http.py      a minimal HTTP/1.1 client on asyncio streams (the client's own cost stays tiny)
  client.py    one streamed chat-completions request, timed chunk by chunk
  loadgen.py   closed-loop (fixed concurrency) and open-loop (Poisson / constant rate) steps
  rows.py      the per-request row schema (versioned), atomic parquet writes, reads that recover
               a killed run's journal
  journal.py   finished requests appended as they finish (JSON lines), so a kill loses none
  metrics.py   the field's metric definitions and per-step summaries derived from the rows
  sweep.py     a run end to end: steps, scored rows, atomic writes after every step
  report.py    HTML / Markdown / terminal report with latency-throughput curves

Data flows one way: requests -> loadgen (client) -> rows -> metrics -> report. Every figure in a
report is computed from load.parquet by `metrics.summarise`, so rows from several runs or
machines can be concatenated and summarised again (percentiles are recomputed, never averaged).
"""
