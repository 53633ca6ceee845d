"""Private helpers shared by every skicr package (one home for each convention).

- :mod:`~skicr._utils.validation`: integers, sigma grids, layer names, the
  streaming-estimator check;
- :mod:`~skicr._utils.images`: THE image check and range conversion
  (``uint8`` in [0, 255] or float in [0, 1], one tolerance);
- :mod:`~skicr._utils.distributed`: the collective device, the process
  group's rank and size, seed broadcast;
- :mod:`~skicr._utils.plotting`: the pyplot import and saving a figure;
- :mod:`~skicr._utils.serialization`: weights-only safe archives of modules
  and plain values.

Only skicr imports these (``tests/test_architecture.py`` allows ``skicr._utils``
as the one private package that crosses package borders).
"""
