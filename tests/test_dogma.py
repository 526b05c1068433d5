"""The sequence model: alphabets, genetic codes, translation and ORF policies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from biofuse.errors import ConfigError, OrfError, SequenceError
from biofuse.pipeline.data import dogma

rna = st.text(alphabet="ACGU", max_size=300)
rna_n = st.text(alphabet="ACGUN", max_size=300)


def test_standard_code_known_codons():
    code = dogma.genetic_code(1)
    assert code.codons["AUG"] == "M"
    assert code.codons["UGG"] == "W"
    assert code.codons["UUU"] == "F"
    assert code.codons["GGC"] == "G"
    assert code.stops == {"UAA", "UAG", "UGA"}
    assert code.starts == {"AUG", "UUG", "CUG"}
    assert len({c for c in code.codons if "N" not in c}) == 64
    # 61 sense codons encode the 20 amino acids
    assert len({aa for c, aa in code.codons.items() if "N" not in c and aa != "*"}) == 20


def test_other_codes_differ_where_ncbi_says():
    assert dogma.genetic_code(11).codons == dogma.genetic_code(1).codons
    assert {"GUG", "AUU", "AUC", "AUA"} <= dogma.genetic_code(11).starts
    vmito = dogma.genetic_code(2).codons
    assert (vmito["UGA"], vmito["AUA"], vmito["AGA"], vmito["AGG"]) == ("W", "M", "*", "*")
    assert dogma.genetic_code(4).codons["UGA"] == "W"
    with pytest.raises(ConfigError, match="Genetic code 99"):
        dogma.genetic_code(99)


def test_codons_with_n_resolve_only_when_unambiguous():
    code = dogma.genetic_code(1)
    assert code.codons["GCN"] == "A"  # every GC? is alanine
    assert code.codons["CUN"] == "L"
    assert code.codons["AUN"] == "X"  # Ile or Met
    assert code.codons["NNN"] == "X"
    assert code.codons["UAN"] == "X"  # Tyr or stop


def test_normalise_nucleotides():
    assert dogma.normalise_nucleotides(" acgt\nRy ") == "ACGUNN"
    with pytest.raises(SequenceError) as err:
        dogma.normalise_nucleotides("ACGZ")
    assert err.value.position == 3 and err.value.char == "Z"
    assert "position 4" in str(err.value)


def test_normalise_protein():
    assert dogma.normalise_protein("mkv*") == "MKV"
    assert dogma.normalise_protein("MK*V") == "MK*V"
    with pytest.raises(SequenceError, match="'1'"):
        dogma.normalise_protein("MK1")


def test_translate_partial_codon_and_alternative_start():
    assert dogma.translate("AUGGC") == "MX"
    assert dogma.translate("GUGAAA", 11) == "VK"
    assert dogma.translate("GUGAAA", 11, start_as_m=True) == "MK"


@pytest.mark.parametrize("policy,seq,expected", [
    ("cds", "AUGAAAUAA", ("AUGAAAUAA", "MK*")),
    ("cds", "CCCUAAGG", ("CCCUAAGG", "P*X")),
    ("strict", "AUGAAAUAA", ("AUGAAAUAA", "MK*")),
    ("longest-orf", "CCAUGAAAUAGCC", ("AUGAAAUAG", "MK*")),
    ("longest-orf", "AUGUAACAUGCCCUGAA", ("AUGCCCUGA", "MP*")),
])
def test_orf_policies(policy, seq, expected):
    view = dogma.apply_orf_policy(seq, policy)
    assert (view.mrna, view.protein) == expected


@pytest.mark.parametrize("seq,reason", [
    ("AUGAAAUA", "multiple of 3"),
    ("GUGAAAUAA", "start codon"),
    ("AUGAAAAAA", "stop codon"),
    ("", "empty"),
])
def test_strict_rejects_with_reason(seq, reason):
    with pytest.raises(OrfError, match=reason):
        dogma.apply_orf_policy(seq, "strict")


def test_strict_table_11_accepts_alternative_start():
    assert dogma.apply_orf_policy("GUGAAAUAA", "strict", 11).protein == "MK*"


def test_longest_orf_rejects_without_orf():
    with pytest.raises(OrfError, match="no open reading frame"):
        dogma.apply_orf_policy("CCCCCCAUGCCC", "longest-orf")


def test_unknown_policy():
    with pytest.raises(ConfigError):
        dogma.apply_orf_policy("AUG", "nope")


# ------------------------------------------------------------------ properties

@given(rna_n)
def test_grid_has_one_token_per_codon_under_every_policy(seq):
    for policy in dogma.ORF_POLICIES:
        try:
            view = dogma.apply_orf_policy(seq, policy)
        except OrfError:
            continue
        assert len(view.protein) == dogma.n_codons(len(view.mrna))
        assert seq[view.start:view.start + len(view.mrna)] == view.mrna


@given(st.lists(st.sampled_from(sorted(set(dogma.genetic_code(1).codons.values()) - {"X"})),
                max_size=80), st.randoms())
def test_translation_is_stable_under_synonymous_recoding(protein, rnd):
    code = dogma.genetic_code(1)
    synonyms: dict[str, list[str]] = {}
    for codon, aa in code.codons.items():
        if "N" not in codon:
            synonyms.setdefault(aa, []).append(codon)
    one = "".join(rnd.choice(synonyms[aa]) for aa in protein)
    two = "".join(rnd.choice(synonyms[aa]) for aa in protein)
    assert dogma.translate(one) == dogma.translate(two) == "".join(protein)


@given(rna_n)
def test_dna_rna_round_trip(seq):
    assert dogma.dna_to_rna(dogma.rna_to_dna(seq)) == seq
    assert "U" not in dogma.rna_to_dna(seq)


@given(st.text(max_size=200))
def test_no_unexpected_exception_on_any_string(text):
    try:
        seq = dogma.normalise_nucleotides(text)
    except SequenceError:
        return
    assert set(seq) <= set("ACGUN")
    for policy in dogma.ORF_POLICIES:
        try:
            dogma.apply_orf_policy(seq, policy)
        except OrfError:
            pass


@given(st.text(max_size=200))
def test_normalise_protein_never_crashes(text):
    try:
        dogma.normalise_protein(text)
    except SequenceError:
        pass
