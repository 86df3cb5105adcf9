"""PNG figures of the training reports (evaluate, explain), drawn with matplotlib's Agg backend.

Figures are built with the object API (``matplotlib.figure.Figure``), never pyplot, so no global
state is shared between figures or with a host application.
"""
