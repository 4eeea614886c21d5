"""Offline evaluation: metrics (``zoo.eval.metrics``) and the faces attribute classifier
(``zoo.eval.face_classifier``)."""
