"""The trainIds ToyCity draws, by name (the 19 Cityscapes classes of `diga.data.labels`)."""

from __future__ import annotations

from diga.data.labels import class_id

ROAD, SIDEWALK, BUILDING = (class_id(n) for n in ("road", "sidewalk", "building"))
WALL, FENCE = (class_id(n) for n in ("wall", "fence"))
POLE, LIGHT, SIGN = (class_id(n) for n in ("pole", "traffic light", "traffic sign"))
VEGETATION, TERRAIN, SKY = (class_id(n) for n in ("vegetation", "terrain", "sky"))
PERSON, RIDER, CAR, TRUCK, BUS = (class_id(n) for n in ("person", "rider", "car", "truck", "bus"))
TRAIN, MOTORCYCLE, BICYCLE = (class_id(n) for n in ("train", "motorcycle", "bicycle"))
