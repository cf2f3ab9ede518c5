"""A potential that is wrong for molybdenum, to show the suite fails it:
``pytest example_suites/molybdenum --potential=morse_mo=wrong_for_mo:morse_mo``.

A Morse pair potential with the Mo parameters of L. A. Girifalco and V. G. Weizer,
Phys. Rev. 114, 687 (1959) (D = 0.8032 eV, alpha = 1.5079 1/Å, r0 = 2.976 Å), cut off
smoothly between 1.6 and 2.0 r0 (4.8-6.0 Å) by ASE's MorsePotential. No pair potential
can describe a transition metal: it obeys the Cauchy relation C12 = C44 (Mo: 166 and
108 GPa in PBE), and its vacancy costs about the cohesive energy (Mo: about 2.7 eV, less
than half of it). Its energies are on its own scale (the errors tests remove the mean
offset).
"""

D_EV = 0.8032
ALPHA_PER_A = 1.5079
R0_A = 2.976


def morse_mo():
    """ASE MorsePotential with Girifalco & Weizer's Mo parameters."""
    from ase.calculators.morse import MorsePotential

    return MorsePotential(epsilon=D_EV, rho0=ALPHA_PER_A * R0_A, r0=R0_A, rcut1=1.6,
                          rcut2=2.0)
