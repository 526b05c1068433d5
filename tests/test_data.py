"""Reading users' tables: the real benchmarks, every format, and a catalogue of bad inputs."""

from __future__ import annotations

import gzip
import json

import numpy as np
import polars as pl
import pytest

from biofuse.errors import ColumnError, ConfigError, DataError
from biofuse.pipeline.data import DataSpec, load_dataset

CDS = "AUGAAACCCGGGUAA"  # M K P G *


def load(path, **kw):
    return load_dataset(DataSpec(path=str(path), **kw))


# ------------------------------------------------------------------ real tables

def test_cov_vac(real_table):
    ds = load(real_table("cov_vac"))
    r = ds.report
    assert (r.rows_read, r.rows_kept) == (2400, 2400)
    assert r.split_sizes == {"train": 1600, "val": 400, "test": 400}
    assert r.lengths["protein"]["max"] == 27  # 81 nt -> 27 codons, one token each
    assert r.coding_notes["no start codon at the first base"] > 2000  # fragments, not CDSs
    assert ds.task == "regression"


def test_cov_vac_strict_drops_fragments_with_reasons(real_table):
    ds = load(real_table("cov_vac"), orf="strict")
    r = ds.report
    assert r.rows_kept + sum(r.dropped.values()) == 2400
    assert any("start codon" in k for k in r.dropped)


def test_mrfp_reports_cross_split_duplicates(real_table):
    ds = load(real_table("mrfp"))
    assert ds.report.duplicates["inputs_in_several_splits"] == 2
    assert any("leaks" in w for w in ds.report.warnings)
    dedup = load(real_table("mrfp"), dedup="leak")
    assert dedup.report.rows_kept == 1457
    assert dedup.report.dropped == {"duplicate input (--dedup leak)": 2}
    # the train copies stay
    assert dedup.report.split_sizes["train"] == ds.report.split_sizes["train"]


def test_mlos_gets_a_seeded_split(real_table):
    a, b = load(real_table("mlos")), load(real_table("mlos"))
    assert a.report.split_source.startswith("random 70/15/15")
    assert a.frame["split"].to_list() == b.frame["split"].to_list()
    assert a.hash == b.hash
    c = load(real_table("mlos"), split_seed=1)
    assert c.frame["split"].to_list() != a.frame["split"].to_list()
    assert c.hash != a.hash


# ------------------------------------------------------------------ formats

def test_csv_tsv_parquet_fasta_gzip_agree(write, tmp_path):
    rows = [("a", CDS, 0.5, "train"), ("b", CDS[:-3] + "UAG", 1.5, "test")]
    csv = "id,sequence,label,split\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n"
    paths = [write("t.csv", csv), write("t.tsv", csv.replace(",", "\t")),
             write("t.csv.gz", gzip.compress(csv.encode())),
             write("t.fasta", "".join(f">{i} label={y} split={s}\n{q[:7]}\n{q[7:]}\n"
                                      for i, q, y, s in rows))]
    pl.DataFrame({"id": ["a", "b"], "sequence": [rows[0][1], rows[1][1]], "label": [0.5, 1.5],
                  "split": ["train", "test"]}).write_parquet(tmp_path / "t.parquet")
    paths.append(tmp_path / "t.parquet")
    hashes = {load(p).hash for p in paths}
    assert len(hashes) == 1


def test_semicolon_table_is_sniffed(write):
    ds = load(write("t.txt", f"sequence;label\n{CDS};1\n{CDS[:-3]}UGA;2\n"), task="regression")
    assert ds.report.separator == ";"
    assert ds.report.rows_kept == 2


def test_multi_modal_and_missing_modality(write):
    text = ("id,mrna,dna,protein,y\n"
            f"t1,{CDS},ACGTACGTAC,MKPG,1\n"
            "t2,ACGUACGUACGU,ACGTAA,,2\n")
    ds = load(write("t.csv", text))
    f = ds.frame
    assert f["dna"].to_list() == ["ACGTACGTAC", "ACGTAA"]  # given DNA is kept, not derived
    assert f["protein"].to_list() == ["MKPG", "TYVR"]  # missing protein derived from the mRNA
    text2 = "id,dna,protein,y\nt1,ACGT,MK,1\nt2,ACGTAA,,2\n"
    f2 = load(write("t2.csv", text2)).frame
    assert f2["protein"].to_list() == ["MK", None]  # nothing to derive it from: absent
    assert f2["mrna"].to_list() == [None, None]


def test_protein_only_table(write):
    ds = load(write("p.csv", "sequence,label\nMKVLAAGIW,1.0\nMSTQ,2.5\n"))
    assert ds.columns.protein == "sequence"
    assert ds.frame["protein"].to_list() == ["MKVLAAGIW", "MSTQ"]
    assert ds.modalities == ("protein",)
    assert any("amino acids" in w for w in ds.report.warnings)


def test_multi_target_regression_with_partial_missing(write):
    text = "seq,t1,t2\n" + f"{CDS},1,2\n{CDS}A,,3\n{CDS}AA,NA,nan\n"
    ds = load(write("m.csv", text), label_cols=("t1", "t2"))
    assert ds.report.rows_kept == 2
    assert ds.report.dropped == {"missing label": 1}
    y = ds.labels()
    assert y.shape == (2, 2) and np.isnan(y[1, 0]) and y[1, 1] == 3


def test_classification_classes_recorded(write):
    text = "seq,label\n" + "".join(f"{CDS},{c}\n" for c in ["high", "low", "low", "mid"])
    ds = load(write("c.csv", text))
    assert ds.task == "classification"
    assert ds.classes == ("high", "low", "mid")
    assert ds.labels()[:, 0].tolist() == [0, 1, 1, 2]


def test_integer_labels_with_few_values_are_classes(write):
    text = "seq,label\n" + "".join(f"{CDS},{c}\n" for c in [0, 1, 1, 0])
    assert load(write("c.csv", text)).task == "classification"
    assert load(write("c.csv", text), task="regression").task == "regression"


def test_group_split_keeps_groups_together(write):
    rows = "".join(f"{CDS},{i},g{i % 17}\n" for i in range(200))
    ds = load(write("g.csv", "seq,label,gene\n" + rows), group_col="gene")
    per_group = ds.frame.group_by("group").agg(pl.col("split").n_unique())
    assert per_group["split"].max() == 1
    assert set(ds.frame["split"]) == {"train", "val", "test"}


def test_random_split_fractions(write):
    rows = "".join(f"{CDS},{i}\n" for i in range(1000))
    ds = load(write("r.csv", "seq,label\n" + rows))
    assert ds.report.split_sizes == {"train": 700, "val": 150, "test": 150}


def test_report_is_json_serialisable(real_table):
    report = load(real_table("mlos")).report.to_dict()
    assert json.loads(json.dumps(report)) == report
    assert report["rows_kept"] > 0 and report["dataset_hash"]


# ------------------------------------------------------------------ the catalogue of bad inputs

def test_empty_file(write):
    with pytest.raises(DataError, match="is empty"):
        load(write("e.csv", ""))


def test_header_only(write):
    with pytest.raises(DataError, match="no data rows"):
        load(write("h.csv", "sequence,label\n"))


def test_missing_named_column_suggests(write):
    with pytest.raises(ColumnError, match="Did you mean 'Sequence'"):
        load(write("m.csv", f"Sequence,Value\n{CDS},1\n"), sequence_col="sequence")


def test_no_sequence_column(write):
    with pytest.raises(ColumnError, match="No sequence column"):
        load(write("m.csv", "foo,bar\n1,2\n"))


def test_wrong_separator_given(write):
    with pytest.raises(ColumnError):
        load(write("w.csv", f"sequence\tlabel\n{CDS}\t1\n"), sep=",")


def test_ragged_rows(write):
    with pytest.raises(DataError, match="fields as the header"):
        load(write("r.csv", f"sequence,label\n{CDS},1,extra,more\n"))


def test_lowercase_dna_alphabet_whitespace_are_normalised(write):
    text = f'sequence,label\n"{CDS.lower()}",1\n"{CDS.replace("U", "T")}",2\n"AUG AAA\nCCC",3\n'
    ds = load(write("n.csv", text))
    assert ds.frame["mrna"].to_list() == [CDS, CDS, "AUGAAACCC"]
    assert ds.report.normalised == {"lower case upper-cased": 1,
                                    "DNA alphabet (T) read as mRNA": 1, "whitespace removed": 1}


def test_invalid_characters_drop_row_with_position(write):
    ds = load(write("i.csv", f"sequence,label\n{CDS},1\nAUGXAA,2\nAUGRYN,3\n"))
    assert ds.report.dropped == {"invalid character": 1}
    assert ds.report.drop_examples["invalid character"] == [
        "row 2: invalid nucleotide 'X' at position 4"]
    assert ds.frame["mrna"].to_list()[1] == "AUGNNN"  # IUPAC codes become N


def test_empty_sequences_dropped(write):
    ds = load(write("e.csv", f"sequence,label\n{CDS},1\n,2\n   ,3\n"))
    assert ds.report.dropped == {"empty sequence": 2}


def test_all_rows_bad_is_an_error(write):
    with pytest.raises(DataError, match="No rows .* usable"):
        load(write("b.csv", "sequence,label\nAC1GU,1\nACGU!,2\n"))


def test_duplicated_ids(write):
    with pytest.raises(DataError, match="duplicated ids"):
        load(write("d.csv", f"id,sequence,label\na,{CDS},1\na,{CDS},2\n"))


def test_nan_labels_dropped_and_counted(write):
    ds = load(write("n.csv", f"sequence,label\n{CDS},1\n{CDS},\n{CDS},NaN\n{CDS},2.5\n"))
    assert ds.report.dropped == {"missing label": 2}


def test_non_numeric_regression_label(write):
    with pytest.raises(DataError, match="non-numeric"):
        load(write("n.csv", f"sequence,label\n{CDS},1\n{CDS},abc\n"), task="regression")


def test_unknown_split_values(write):
    with pytest.raises(DataError, match="'fold1'"):
        load(write("s.csv", f"sequence,label,split\n{CDS},1,train\n{CDS},2,fold1\n"))


def test_split_spellings(write):
    text = "sequence,label,split\n" + "".join(
        f"{CDS},{i},{s}\n" for i, s in enumerate(["Training", "VALID", "dev", "Test", "holdout"]))
    assert load(write("s.csv", text)).frame["split"].to_list() == [
        "train", "val", "val", "test", "test"]


def test_100kb_sequence(write):
    seq = "AUG" + "GCU" * 33_333 + "UAA"
    ds = load(write("l.csv", f"sequence,label\n{seq},1\n{CDS},2\n"))
    assert ds.report.lengths["protein"]["max"] == 33_335


def test_non_utf8_bytes(write):
    with pytest.raises(DataError, match="not valid UTF-8.*line 3"):
        load(write("u.csv", b"sequence,label\nAUG,1\nAUG,caf\xe9\n"))


def test_bad_gzip(write):
    with pytest.raises(DataError, match="gzipped"):
        load(write("g.csv.gz", b"\x1f\x8b\x08\x00garbage"))


def test_fasta_without_header(write):
    with pytest.raises(DataError, match="before any '>'"):
        load(write("f.fa", "ACGU\n>x\nACGU\n"))


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="directory"):
        load(tmp_path)
    with pytest.raises(DataError, match="No such file"):
        load(tmp_path / "nope.csv")


def test_bad_spec_values():
    with pytest.raises(ConfigError):
        DataSpec(path="x", orf="nope")
    with pytest.raises(ConfigError):
        DataSpec(path="x", genetic_code=99)
