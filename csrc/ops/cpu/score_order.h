// Ranking by score on the CPU: scores become unsigned integer keys in the reverse order of the scores, and
// a stable LSD radix sort of (key, index) pairs ranks boxes by score descending, ties by lower index, in a
// few linear passes instead of a comparison sort.
#pragma once

#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

namespace tinyfast {

template <typename Unsigned, typename Float>
Unsigned descending_key_bits(Float score) {
  static_assert(sizeof(Unsigned) == sizeof(Float));
  constexpr Unsigned kSign = Unsigned(1) << (8 * sizeof(Unsigned) - 1);
  score += Float(0);  // -0 becomes +0: the two compare equal, so they must get one key
  Unsigned bits;
  std::memcpy(&bits, &score, sizeof bits);
  // Non-negative floats order like their bits and negative ones in reverse: this key ascends with the score.
  const Unsigned ascending = (bits & kSign) ? ~bits : (bits | kSign);
  return ~ascending;
}

// Keys that sort ascending as the scores sort descending. Scores must not be NaN.
inline uint32_t descending_key(float score) {
  return descending_key_bits<uint32_t>(score);
}

inline uint64_t descending_key(double score) {
  return descending_key_bits<uint64_t>(score);
}

template <typename Key>
struct KeyedIndex {
  Key key;
  int32_t index;
};

// Sorts `items` by key ascending, stably, one pass per key byte; a byte that has one value in all keys
// (the low bytes of a float score widened to double, the exponent of scores in [0, 1]) costs no pass.
template <typename Key>
void radix_sort(std::vector<KeyedIndex<Key>>& items, std::vector<KeyedIndex<Key>>& scratch) {
  constexpr int kBytes = sizeof(Key);
  const size_t n = items.size();
  if (n < 2) {
    return;
  }
  uint32_t counts[kBytes][256] = {};
  for (const KeyedIndex<Key>& item : items) {
    for (int byte = 0; byte < kBytes; ++byte) {
      ++counts[byte][(item.key >> (8 * byte)) & 0xFF];
    }
  }
  scratch.resize(n);
  for (int byte = 0; byte < kBytes; ++byte) {
    uint32_t* next = counts[byte];
    if (next[(items[0].key >> (8 * byte)) & 0xFF] == n) {
      continue;
    }
    uint32_t first = 0;
    for (int value = 0; value < 256; ++value) {
      first += std::exchange(next[value], first);
    }
    for (const KeyedIndex<Key>& item : items) {
      scratch[next[(item.key >> (8 * byte)) & 0xFF]++] = item;
    }
    items.swap(scratch);
  }
}

}  // namespace tinyfast
