"""Units and element names without importing ASE (used where imports must stay cheap)."""

from __future__ import annotations

#: 1 eV/Å³ in GPa (CODATA 2014 elementary charge, as ASE's default ase.units.GPa)
EV_PER_A3_TO_GPA = 160.21766208

_SYMBOLS = (
    "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga "
    "Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd "
    "Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac "
    "Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr"
).split()


def chemical_symbol(number: int) -> str:
    """Symbol of atomic number ``number`` (1..103)."""
    if not 0 < number < len(_SYMBOLS):
        raise ValueError(f"no element with atomic number {number}")
    return _SYMBOLS[number]


def is_chemical_symbol(symbol: str) -> bool:
    return symbol in _SYMBOLS[1:]
