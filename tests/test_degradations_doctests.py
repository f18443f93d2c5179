"""The docstring examples of the degradation modules run and hold."""
import doctest

import pytest

from anyrestore.degradations import blur, jpeg, noise, pipeline


@pytest.mark.parametrize("module", [noise, blur, jpeg, pipeline], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, extraglobs={"torch": __import__("torch")})
    assert result.attempted > 0 and result.failed == 0


def test_preset_dict_spec():
    from anyrestore.degradations import build_sampler
    from anyrestore.errors import ConfigError

    assert build_sampler({"preset": "ram-paper"}).classes == ("noise", "blur", "jpeg")
    with pytest.raises(ConfigError, match="needs 'type'"):
        build_sampler({"nothing": 1})
