"""CompoundEye vision pipeline: sources, detector runtime, tracker, zones, rules, evidence, worker.

May import numpy, OpenCV, onnxruntime and PyAV; never FastAPI, the database or an object-store client.
"""
