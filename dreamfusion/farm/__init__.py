"""Many prompts, many machines: ``dreamfusion batch prompts.txt --workspace farm/ [training options]``.

``prompts`` reads the prompt file (text, CSV or JSON lines) into runs; ``runner`` runs them as Ray
tasks (or one after another without Ray), each a ``dreamfusion`` subprocess in ``<farm>/<slug>``,
resumable and failure-isolated; ``report`` writes ``runs.csv``, ``summary.csv`` and the gallery
``index.html``. Ray is an install extra, imported only when a batch starts. See docs/batch.md.
"""
