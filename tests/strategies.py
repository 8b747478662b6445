"""Hypothesis strategies the fuzz tests share."""

from hypothesis import strategies as st

# Any JSON value (no NaN: a JSON body cannot carry one), nested a few levels.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)
