"""Validation protocols, one folder per family behind one public module each
(:mod:`.properties`, :mod:`.rss`, :mod:`.compression`, :mod:`.md`, :mod:`.fitting`,
:mod:`.domain`), plus the single-module :mod:`.invariance` and the contract every
protocol plugs into (:mod:`.base`).

Plain library (no pytest); nothing is imported here, so importing a family loads only
that family.
"""
