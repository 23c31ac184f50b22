"""Zero commitments by level (commp-spec §4). Generated; do not edit.

Produced by ``scripts/gen_zero_commitments.py``; a test regenerates it
and compares. ``ZERO_COMMITMENTS[l]`` is the root of ``2**l`` zero
leaves, i.e. of ``32·2**l`` zero padded bytes.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ZERO_COMMITMENTS"]

ZERO_COMMITMENTS: Final[tuple[bytes, ...]] = (
    # level 0: 32 B
    bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000000"),
    # level 1: 64 B
    bytes.fromhex("f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb0b"),
    # level 2: 128 B
    bytes.fromhex("3731bb99ac689f66eef5973e4a94da188f4ddcae580724fc6f3fd60dfd488333"),
    # level 3: 256 B
    bytes.fromhex("642a607ef886b004bf2c1978463ae1d4693ac0f410eb2d1b7a47fe205e5e750f"),
    # level 4: 512 B
    bytes.fromhex("57a2381a28652bf47f6bef7aca679be4aede5871ab5cf3eb2c08114488cb8526"),
    # level 5: 1 KiB
    bytes.fromhex("1f7ac9595510e09ea41c460b176430bb322cd6fb412ec57cb17d989a4310372f"),
    # level 6: 2 KiB
    bytes.fromhex("fc7e928296e516faade986b28f92d44a4f24b935485223376a799027bc18f833"),
    # level 7: 4 KiB
    bytes.fromhex("08c47b38ee13bc43f41b915c0eed9911a26086b3ed62401bf9d58b8d19dff624"),
    # level 8: 8 KiB
    bytes.fromhex("b2e47bfb11facd941f62af5c750f3ea5cc4df517d5c4f16db2b4d77baec1a32f"),
    # level 9: 16 KiB
    bytes.fromhex("f9226160c8f927bfdcc418cdf203493146008eaefb7d02194d5e548189005108"),
    # level 10: 32 KiB
    bytes.fromhex("2c1a964bb90b59ebfe0f6da29ad65ae3e417724a8f7c11745a40cac1e5e74011"),
    # level 11: 64 KiB
    bytes.fromhex("fee378cef16404b199ede0b13e11b624ff9d784fbbed878d83297e795e024f02"),
    # level 12: 128 KiB
    bytes.fromhex("8e9e2403fa884cf6237f60df25f83ee40dca9ed879eb6f6352d15084f5ad0d3f"),
    # level 13: 256 KiB
    bytes.fromhex("752d9693fa167524395476e317a98580f00947afb7a30540d625a9291cc12a07"),
    # level 14: 512 KiB
    bytes.fromhex("7022f60f7ef6adfa17117a52619e30cea82c68075adf1c667786ec506eef2d19"),
    # level 15: 1 MiB
    bytes.fromhex("d99887b973573a96e11393645236c17b1f4c7034d723c7a99f709bb4da61162b"),
    # level 16: 2 MiB
    bytes.fromhex("d0b530dbb0b4f25c5d2f2a28dfee808b53412a02931f18c499f5a254086b1326"),
    # level 17: 4 MiB
    bytes.fromhex("84c0421ba0685a01bf795a2344064fe424bd52a9d24377b394ff4c4b4568e811"),
    # level 18: 8 MiB
    bytes.fromhex("65f29e5d98d246c38b388cfc06db1f6b021303c5a289000bdce832a9c3ec421c"),
    # level 19: 16 MiB
    bytes.fromhex("a2247508285850965b7e334b3127b0c042b1d046dc54402137627cd8799ce13a"),
    # level 20: 32 MiB
    bytes.fromhex("dafdab6da9364453c26d33726b9fefe343be8f81649ec009aad3faff50617508"),
    # level 21: 64 MiB
    bytes.fromhex("d941d5e0d6314a995c33ffbd4fbe69118d73d4e5fd2cd31f0f7c86ebdd14e706"),
    # level 22: 128 MiB
    bytes.fromhex("514c435c3d04d349a5365fbd59ffc713629111785991c1a3c53af22079741a2f"),
    # level 23: 256 MiB
    bytes.fromhex("ad06853969d37d34ff08e09f56930a4ad19a89def60cbfee7e1d3381c1e71c37"),
    # level 24: 512 MiB
    bytes.fromhex("39560e7b13a93b07a243fd2720ffa7cb3e1d2e505ab3629e79f46313512cda06"),
    # level 25: 1 GiB
    bytes.fromhex("ccc3c012f5b05e811a2bbfdd0f6833b84275b47bf229c0052a82484f3c1a5b3d"),
    # level 26: 2 GiB
    bytes.fromhex("7df29b69773199e8f2b40b77919d048509eed768e2c7297b1f1437034fc3c62c"),
    # level 27: 4 GiB
    bytes.fromhex("66ce05a3667552cf45c02bcc4e8392919bdeac35de2ff56271848e9f7b675107"),
    # level 28: 8 GiB
    bytes.fromhex("d8610218425ab5e95b1ca6239d29a2e420d706a96f373e2f9c9a91d759d19b01"),
    # level 29: 16 GiB
    bytes.fromhex("6d364b1ef846441a5a4a68862314acc0a46f016717e53443e839eedf83c2853c"),
    # level 30: 32 GiB
    bytes.fromhex("077e5fde35c50a9303a55009e3498a4ebedff39c42b710b730d8ec7ac7afa63e"),
    # level 31: 64 GiB
    bytes.fromhex("e64005a6bfe3777953b8ad6ef93f0fca1049b2041654f2a411f7702799cece02"),
    # level 32: 128 GiB
    bytes.fromhex("259d3d6b1f4d876d1185e1123af6f5501af0f67cf15b5216255b7b178d12051d"),
    # level 33: 256 GiB
    bytes.fromhex("3f9a4d411da4ef1b36f35ff0a195ae392ab23fee7967b7c41b03d1613fc29239"),
    # level 34: 512 GiB
    bytes.fromhex("fe4ef328c61aa39cfdb2484eaa32a151b1fe3dfd1f96dd8c9711fd86d6c58113"),
    # level 35: 1 TiB
    bytes.fromhex("f55d68900e2d8381eccb8164cb9976f24b2de0dd61a31b97ce6eb23850d5e819"),
    # level 36: 2 TiB
    bytes.fromhex("aaaa8c4cb40aacee1e02dc65424b2a6c8e99f803b72f7929c4101d7fae6bff32"),
    # level 37: 4 TiB
    bytes.fromhex("c91a84c057fd4afcc209c3b482360cf7493b9129fa164cd1fe6b045a683b5322"),
    # level 38: 8 TiB
    bytes.fromhex("64a2c1df312ecb443b431946c02fe701514b5291091b888f03189bee8ea11416"),
    # level 39: 16 TiB
    bytes.fromhex("739953434ead6e24f1d1bf5b68ca823b2692b3000a7806d08c76640da98c3526"),
    # level 40: 32 TiB
    bytes.fromhex("771f5b63af6f7d1d515d134084d535f5f4d8ab8529b2c3f581f143f8cc38be2f"),
    # level 41: 64 TiB
    bytes.fromhex("9031a15bf51550a85db1f64f4db739e01125478a50ee332bc2b4f6462214b20b"),
    # level 42: 128 TiB
    bytes.fromhex("c83ba84710b74413f3be84a5466aff2d7f0c5472248ffbeb2266466a92ac4f12"),
    # level 43: 256 TiB
    bytes.fromhex("2fe598945de393714c10f447cec237039b5944077a78e0a9811cf5f7a45abe1b"),
    # level 44: 512 TiB
    bytes.fromhex("395355ae44754a5cde74898a3f2ef60d5871ab35019c610fc413a62d57646501"),
    # level 45: 1 PiB
    bytes.fromhex("4bd4712084416c77eec00cab23416eda8c8dbf681c8ccd0b96c0be980a40d818"),
    # level 46: 2 PiB
    bytes.fromhex("f6eeae7dee22146564155ebe4bdf633333401de68da4aa2a6e946c2363807a34"),
    # level 47: 4 PiB
    bytes.fromhex("8b43a114ba1c1bb80781e85f87b0bbee11c69fdbbd2ed81d6c9b4c7859c04e34"),
    # level 48: 8 PiB
    bytes.fromhex("f74dc344ee4fa47f07fb2732ad9443d94892ca8b53d006c9891a32ef2b74491e"),
    # level 49: 16 PiB
    bytes.fromhex("6f5246ae0f965e5424162403d3ab81ef8d15439c5f3a49038488e3640ef98718"),
    # level 50: 32 PiB
    bytes.fromhex("0b5b44ccf91ff135af58d2cf694b2ac99f22f5264863d6b9272b6155956aa10e"),
    # level 51: 64 PiB
    bytes.fromhex("b2cc6e19d5cb1fbd121f166fcaab4f3944df848312cfc5c1cb710744fe0fd908"),
    # level 52: 128 PiB
    bytes.fromhex("5e47488bb4694450b178632d44cac8009da55192f145bbe09ebf2fb14238d808"),
    # level 53: 256 PiB
    bytes.fromhex("28a8e1bc0e82f9ab28aaf0027644b37ebbea733a8f898aacb46f590cd271962e"),
    # level 54: 512 PiB
    bytes.fromhex("5db15a16cd3a2935047cbc00889d9c01e10a893027ab72bed2a9f775a9761a05"),
    # level 55: 1 EiB
    bytes.fromhex("53a4f5841b2c6d8988bbaf50e215867c019689aca408e465ac834b2b65232714"),
    # level 56: 2 EiB
    bytes.fromhex("733f5f34e8556e7f5967506ce4468b2348cd0f22148049e23c80db5d306d0b33"),
    # level 57: 4 EiB
    bytes.fromhex("69957ac972f823aab239b6496729c6b8b751a2f57097f2f05df341aca18bf225"),
    # level 58: 8 EiB
    bytes.fromhex("960fd9357620d55878cf99a2f687e3ee9347813185deaa148668f1eba240f53b"),
)
"""``ZERO_COMMITMENTS[l]``: root of ``2**l`` zero leaves, for ``l`` in 0..58."""
