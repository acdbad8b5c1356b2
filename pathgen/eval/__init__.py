"""Caption quality measurement (``pathgen eval``) and zero-shot CLIP evaluation.

Pure metrics: :mod:`~pathgen.eval.text_metrics` (BLEU-4, ROUGE-L, distinct-n, Levenshtein),
:mod:`~pathgen.eval.ranking` (recall@k, near duplicates), :mod:`~pathgen.eval.review_metrics`,
:mod:`~pathgen.eval.recovery_metrics`. Data gathering from the store:
:mod:`~pathgen.eval.gather`. Computation with the CLIP model: :mod:`~pathgen.eval.evaluate`.
Rendering: :mod:`~pathgen.eval.report`. Zero-shot: :mod:`~pathgen.eval.zeroshot`.

Example::

    data = await load_run_data(engine, "run-1")
    metrics = evaluate_run(data, load_clip(settings.model))
    write_eval_report(metrics, "report/")
"""
