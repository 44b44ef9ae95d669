"""Batch re-scan of stored footage (issue 10): see docs/rescan.md.

- :mod:`~vision.rescan.discover` / :mod:`~vision.rescan.s3`: the files (folder, glob, S3 prefix);
- :mod:`~vision.rescan.naming`: camera and start time from the file name or a sidecar;
- :mod:`~vision.rescan.scan`: one file through the live pipeline (modes sampled, keyframes, adaptive);
- :mod:`~vision.rescan.executors`: in-process, process pool, Dask;
- :mod:`~vision.rescan.job`: checkpoint, evidence, progress, posting;
- :mod:`~vision.rescan.report`: the JSON report and ``compare``.
"""
from vision.rescan.job import EXIT_CANCELLED, EXIT_OK, EXIT_PARTIAL, JobSpec, RescanJob, post_violations
from vision.rescan.report import compare_reports, results_of
from vision.rescan.scan import MODES, ScanSettings

__all__ = ["EXIT_CANCELLED", "EXIT_OK", "EXIT_PARTIAL", "JobSpec", "MODES", "RescanJob", "ScanSettings",
           "compare_reports", "post_violations", "results_of"]
