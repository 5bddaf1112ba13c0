"""Concept Space: the library behind the book (data, model, training, evaluation, analysis)."""
