"""DP synthetic tabular data and the attacks that measure what it leaks.

>>> from privlab.synth import get_generator, load_adult_table
>>> table = load_adult_table(n=2000)                                         # doctest: +SKIP
>>> gen = get_generator("aim").fit(table, epsilon=1.0, delta=1e-5)           # doctest: +SKIP
>>> synthetic = gen.sample(2000); gen.epsilon()                              # doctest: +SKIP

Generators (:data:`GENERATORS`): ``aim`` and ``mst`` (smartnoise-synth on private-pgm's ``mbi``),
``dpvae`` (DP-SGD through :func:`privlab.dp.make_private`), ``copula`` (non-private baseline).
Evaluation lives in :mod:`privlab.synth.evaluation`. See ``docs/synthetic.md``.
"""

from privlab.synth.adult import adult_domain, load_adult_table
from privlab.synth.generators import GENERATORS, FittedGenerator, Generator, get_generator, register
from privlab.synth.table import COLUMN_TYPES, Column, Domain, Table

__all__ = [
    "COLUMN_TYPES",
    "GENERATORS",
    "Column",
    "Domain",
    "FittedGenerator",
    "Generator",
    "Table",
    "adult_domain",
    "get_generator",
    "load_adult_table",
    "register",
]
