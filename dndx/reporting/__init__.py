"""Reporting: one Markdown table writer (:mod:`.tables`), the figures, the
evaluation report and the inference summary.
"""
