"""What rulechef-trace costs an offline rulechef learning run.

Run it from the repository root, with the package installed::

    python -m benchmarks.overhead                 # full run: 200 and 2,000 examples
    python -m benchmarks.overhead --quick         # smoke run, about half a minute
    python -m benchmarks.overhead --data FILE.jsonl --label-field gold_label
    python -m benchmarks.overhead --json > out.json
    python -m benchmarks.overhead --from-json out.json

The same ``learn_rules()`` workload (rulechef driven by the deterministic
stand-in LLM) runs in one worker process per configuration:

* **A** plain rulechef, ``rulechef_trace`` never imported; **A2** the same
  again, the A/A control that shows how far two identical processes differ;
* **B** ``import rulechef_trace``, nobody listening;
* **C** ``with record_trace(chef, storage_path=...)``, writing the trace files;
* **D** a no-op receiver on every signal;
* **P** C again, under direct accounting of the package's own time (not timed).

Verdicts (exit status 1 when one fails) rest on deterministic measures and
on the direct accounting: the package's own time per run, call counts, bytes
written, memory attributed to the package, structural checks. Wall-clock
ratios B/A, C/A, D/A are shown beside A2/A as context and never judged.
docs/performance.md explains the method and shows a measured run.

Parts: ``scenarios`` (data, stand-in, chef, configurations), ``accounting``
(the direct accounting), ``probes`` (evaluations counted, memory, cProfile),
``worker`` (the worker
process), ``runner`` (the parent and its rounds), ``report`` (figures,
verdicts, the table), ``__main__`` (the command line).
"""
