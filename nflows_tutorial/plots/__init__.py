"""The course's figures, drawn with matplotlib, each module one kind of figure.

- :mod:`~nflows_tutorial.plots.diagrams`: chains of layers, a model's architecture, the coupling layer.
- :mod:`~nflows_tutorial.plots.charts`: curves and densities (change of variables, dequantization, learning curves).
- :mod:`~nflows_tutorial.plots.images`: image grids, masks and the squeeze.
- :mod:`~nflows_tutorial.plots.style`: what they share (the widest figure, the colours of a mask).
"""
