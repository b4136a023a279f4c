import pytest

from transferlab.adversarial.targets import auto_target, target_classes
from transferlab.core.errors import ParamsError

PETS = [{"index": 0, "name": "Abyssinian", "species": "cat"}, {"index": 1, "name": "Bengal", "species": "cat"},
        {"index": 2, "name": "beagle", "species": "dog"}]
KAGGLE = [{"index": 0, "name": "cats", "species": None}, {"index": 1, "name": "dogs", "species": None}]
CARS = [{"index": 0, "name": "Aston Martin DB9", "species": None}, {"index": 1, "name": "Škoda Octavia", "species": None},
        {"index": 2, "name": "VW Käfer / Beetle", "species": None}]


def test_targets_resolve_by_species_name_or_class():
    assert target_classes("species:cat", PETS) == [0, 1]
    assert target_classes("beagle", PETS) == [2]
    assert target_classes("species:cat", KAGGLE) == [0]
    assert target_classes("VW Käfer / Beetle", CARS) == [2]
    with pytest.raises(ParamsError, match="adversarial.target: 'zebra' matches no class"):
        target_classes("zebra", PETS)


def test_auto_fits_any_dataset():
    assert target_classes("auto", CARS) == [0]  # no species: the first class
    assert target_classes("auto", PETS) == [0, 1]  # the seed's dog-to-cat lesson where there are cats and dogs
    assert target_classes("auto", KAGGLE) == [0]
    capitalized = [{"index": 0, "name": "Dogs", "species": None}, {"index": 1, "name": "Cats", "species": None}]
    assert target_classes("auto", capitalized) == [1]  # a folder named Cats is the seed's cat, whatever its case


def test_auto_falls_back_to_a_class_when_every_class_is_a_cat():
    only_cats = [{"index": 0, "name": "Abyssinian", "species": "cat"}, {"index": 1, "name": "Bengal", "species": "cat"}]
    assert auto_target(only_cats) == "Abyssinian"
    with pytest.raises(ParamsError, match="covers every class"):
        target_classes("species:cat", only_cats)


def test_species_cat_is_refused_on_data_without_cats():
    with pytest.raises(ParamsError, match="'species:cat' matches no class.*'Aston Martin DB9'"):
        target_classes("species:cat", CARS)
