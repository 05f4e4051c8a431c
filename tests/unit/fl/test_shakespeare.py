"""Shakespeare by speaking role (LEAF's federated next-character task): parsing, windows, one client per role."""

import pytest
import torch

from privlab.data.registry import availability
from privlab.data.speakers import VOCAB, encode, load_shakespeare_speakers, split_roles
from privlab.errors import InvalidParameterError
from privlab.fl import FedConfig

PLAY = """ACT I.

SCENE 1. A room.

[Enter HELENA and the COUNTESS.]

COUNTESS.
In delivering my son from me,
I bury a second husband.

HELENA.
[Aside.]
I do affect a sorrow indeed.

FIRST LORD.
Madam.

COUNTESS.
What hope is there?
"""


def test_speeches_are_grouped_by_speaker_without_stage_directions():
    roles = split_roles(PLAY)
    assert roles == {
        "COUNTESS": "In delivering my son from me,\nI bury a second husband.\nWhat hope is there?",
        "HELENA": "I do affect a sorrow indeed.",
        "FIRST LORD": "Madam.",
    }


def test_encode_maps_printable_ascii_and_unknowns_to_space():
    ids = encode("Ay.\n\t")
    assert "".join(VOCAB[i] for i in ids.tolist()) == "Ay.\n "


def _need() -> None:
    msg = availability().get("shakespeare")
    if msg:
        pytest.skip(msg)


def test_roles_are_windows_of_their_own_lines_with_a_held_out_tail():
    _need()
    c = load_shakespeare_speakers(6, seq_len=20)
    assert len(c.roles) == 6 and len(set(c.roles)) == 6 and c.roles[0] == "othello/IAGO"
    assert c.train.x.shape[1] == 20 and set(c.train_users.tolist()) == set(range(6)) == set(c.test_users.tolist())
    for u in range(6):  # ~80/20 split of each role's windows
        n_tr, n_te = int((c.train_users == u).sum()), int((c.test_users == u).sum())
        assert 0.75 < n_tr / (n_tr + n_te) < 0.85
    first = "".join(VOCAB[i] for i in [*c.train.x[0].tolist(), int(c.train.y[0])])
    assert first.startswith("'Sblood, but you will")  # Iago's first speech (Othello I.1)
    from privlab.data.speakers import play_texts

    assert first.split("\n")[0] in play_texts()["othello"]
    with pytest.raises(InvalidParameterError, match="'num_roles'"):
        load_shakespeare_speakers(10_000)


def test_fed_config_pairs_shakespeare_with_user_partition_and_char_model():
    with pytest.raises(InvalidParameterError, match="'dataset' parameter of FedConfig"):
        FedConfig(dataset="shakespeare", num_clients=10, clients_per_round=5)
    with pytest.raises(InvalidParameterError, match="'dataset' parameter of FedConfig"):
        FedConfig(partition="user", num_clients=10, clients_per_round=5)


def test_one_client_per_role_trains_on_flower_and_subject_mia_uses_unseen_roles():
    _need()
    from privlab.fl.client import client_data, make_client_app
    from privlab.fl.inprocess import make_in_process_grid
    from privlab.fl.server import run_server
    from privlab.fl.subject_mia import subject_mia_experiment

    cfg = FedConfig(dataset="shakespeare", model="char", partition="user", num_clients=4, clients_per_round=4,
                    rounds=2, local_epochs=1.0, batch_size=10, lr=0.5, train_size=800, eval_size=300, hidden=(64,))
    corpus = load_shakespeare_speakers(4, seq_len=40)
    for i in range(4):
        own = corpus.train.x[corpus.train_users == i][:200]
        assert torch.equal(client_data(cfg, i).x, own)  # client i holds role i's windows, capped
    records, state = run_server(make_in_process_grid(make_client_app(cfg), cfg.num_clients), cfg)
    assert len(records) == 2 and records[-1].accuracy > 0.1  # above the 1/96 of a uniform guess
    m = subject_mia_experiment(cfg, state)
    assert m.n_members == m.n_nonmembers == 4
