//! ring's RSA checks agree with RustCrypto's: what RustCrypto signs verifies, anything altered
//! or signed by another key does not, and keys ring does not take stay with RustCrypto.

use super::*;
use jsonwebtoken::crypto::JwtSigner;
use jsonwebtoken::EncodingKey;

const KEY_2048: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7Bco5cDNfmiX6N4ms4YbMpfXCPXRo1Vhi4/D7qf54UFSdmpF\nUZkFa+fLpVBzeXgOHsTc0iLiW1+0aVG7Y0zVjAoflBTn9JaNrnbZSJ/n/P1//cA3\n7n3rEhe52nwNJAc8ccn79IdUbgZJan+RHfXa8gXUP0eq9EHON6NA9eLjKs1S7iJi\nOti5+3HFbeRGJf9DSCvkvnl86PGW8bS5Es8SHvQs0//klS8ymUsKVRXwRPXRiX2a\nQzRb0PuYUmdRCHHHTW6YNVPjprL8Mp8iiLjYzyT3t5fPbn+3kE3BfIkiKjVlFiJL\nBq628MXAEOaEvPl/wdkDNCHq0Is9SkZ1WB3QJQIDAQABAoIBAC+FY+KHIfXRSM6D\nNMgK9NuEq7BuhnF5hKZqXDZkEkyQcPBL6MMJaYl0QU33uR6Yl0MDPi1//w8EXxSZ\n8n2E4DENcpjEcoINcdxNqOPQ6AnI3uPtNnTnXJMqOmsrcBux5y1CSlhIiyqQUmPA\n5K1iqNzxZm0MWHFM85zIXBGCR1Z8Vb2Yz5rsuI7YBuj/4OC2YyM9N5iZ10WcDiPK\n7FuStjf1VLLyClNmw0wJVNRWFO2laUwq/Vy6i4rKD7Avu2paKnobGHo/XxuBjePd\nFKGXCRPFxrPUGgOuYD1TMBxSp7kbo4jcnBQ7yF0lQawrn6G1OmJXstJwFAthEgQU\n/69OdnsCgYEA94cb2gOR0IRoTmcbfqBtrWHHxxtDwoEAIb3Yow8Exiq1lzV34Ox1\nyyAjPbdI+p+5cLamhHU/2XijiSSIPSBKd8lQcbStzLtdgpxM6JDvh3nRUGlagZJS\nFdW7ZZxrZxYC5VN5AqnfHciilk9ySmJPVC8IMZ2a3FHcgBk9GDY5F3sCgYEA9CvV\nuw5kGX6iCI4KozNqhfb/AHGvlWibOu2RgQ+PEoH6eXl9Tm7mqnVeZGaNXoXqvwLd\nk3d2Yah9lQLH7IUVBfrV0izG8A9tPXozq82BmRUnDF9PrOXJXDiC3TWdoMSzlAVM\n11ymDpEum1LU4rLUtROQ63k5zMkVqcDHnouqVN8CgYEA81yg434y9KHZs4voGl08\nuAS02GtT+X2/VW1D+z0e4n7HPr1Q+ZFCVs1oGJuFYvN67PiHSx/EANp9Xq7OS9rd\nnFwPfVu4rNtiGrH1Y4psFfSM+NQ8KbxkfBdBQavCZP3dJv8ksJu3Q58pS0MdCUkS\n2Z/MHIvp38eUVVV7Hbzh8NUCgYEA83Dk5lwBxz1vVbIwvuhbc3eAZLP0SLWD1yvX\nX2Lg1aYL0aMkINgHWLouQ1HP7wb7tjeoLQf1Woa/tpqQM6u3+z9MggEs01m+I4Y8\nEDWT2cmyJe69JHfx2+Vn7B8xqoGTPahPJYV09p8fZbMfF2sPEf6RBYTW8Osnkxjm\nrZc4WucCgYBqu5aMH2oxb+V+nFtG3huP0fmwsVY2euWfaMJP1Wc332jPRvo4lDlo\nH1DJjaZf1gXzCbJXB10s/RjMIhIf5YCr4TiSj0zIkaqO95UIcpz9FO2Dey0caDhv\nWk4HIRrUiOTaxCAEvacipxKUA03U/pTR4DUn0HEGCn+8aatIRzx3zw==\n-----END RSA PRIVATE KEY-----\n";
const N_2048: &str = "7Bco5cDNfmiX6N4ms4YbMpfXCPXRo1Vhi4_D7qf54UFSdmpFUZkFa-fLpVBzeXgOHsTc0iLiW1-0aVG7Y0zVjAoflBTn9JaNrnbZSJ_n_P1__cA37n3rEhe52nwNJAc8ccn79IdUbgZJan-RHfXa8gXUP0eq9EHON6NA9eLjKs1S7iJiOti5-3HFbeRGJf9DSCvkvnl86PGW8bS5Es8SHvQs0__klS8ymUsKVRXwRPXRiX2aQzRb0PuYUmdRCHHHTW6YNVPjprL8Mp8iiLjYzyT3t5fPbn-3kE3BfIkiKjVlFiJLBq628MXAEOaEvPl_wdkDNCHq0Is9SkZ1WB3QJQ";
const OTHER_KEY_2048: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAvgAehSu9xHVPOVbdY6S7V1PlcikGBtVD2+AjVjdWYQwHHebm\nDIiYBEwJPXtaSfqzHqKnfrPfjAHBVa8OC8ufLhfnL13vDLI7v9/kfj2kiRhba7a+\n60LECTlolPsj94cOSKrjeyQxHz6hC1afdeoABrzsx1E9yl7HuW9wMj22JWEt26T8\n9sz/HsTt/xwgeCtGzbYqLwaKOv4pNRxLT3Y8dr/pPuSYL8/mFFqvCx2WLsE6Fwjr\nThAtw1MUlWJhXSEFke6PU0YPIMTR02+ozHNBLrJdGAIWN6UskgCJocVKFBARdCea\n1cuDwohbzOzSf1hTgo8URSXvGtiWesZmMF1YMwIDAQABAoIBAFCDxGsyigxCmfv2\nb4LWP/1VtBmYgNFMdqEqbk8OzC/75NgrDLmq+KB5iEDhkPVgo58L1ma+2rB93evt\nbspY02+4+WL9L1v1+5Pn0PAeNydRhwwyON2BQYmXJlZbxnYSaV8p65Q3VgmjhKNF\nZfWV38T7MmuUZdboK0LNkoH33MQhmlHCthv/OmwI41zAoU/MVs4u0XVrTFeICObd\nRU30lZlCtZKC2gD0qimDR2TivwZ7i92iuzd4dsEDajrb8LBTJNnLilHjfJVdHnfB\n5LJggADQWIP4VEfkgEj7yYIztSdUZam1HsNQmcuYBVM2dRPGQvqWGCMWdFDMS12h\n4SF3H8ECgYEA9Sko9xRrlnBXd0ykgLyab6XBPl8B3hOga+dzxGWnlkdHt7Zqx29k\njERf2N8ctwXxpHmjBmMHeREafdzG2+0xsKS4OU06eDvMb05vvfIX0RyB7fKoCSdu\nQ78YZqQlK/2dZvMO03MQ74PE1ISuX4VMhCOkUwHT8sYhH0T9mvtxzHsCgYEAxmah\nQ7rg7PvT3KHWlhrwBOP8vcH2kj5oUVD+XNmQ94tQYgITH4Lkjl8QxFMRUTqiECpV\noD4lTDmhdXEhVSt3OtmE6JNIsyrKHMmBADxsvtqL7/j8w222ve2syYWPYjxDkl7t\nj5hFuPeyAYTTe1N3TW1cXkncCegWTE+CYVqsoakCgYEAw8N2PrZDowFaFp1QzqvL\n9lM5mABtkVPCyecr/iveQpXworY7Vb2RYKBImPiwCUXpyxiGIVd6ZCZQLSjacktZ\nXmBp6vfMNK4rdMYBXH+wnP5SkhsuKwEdf2NcrLluJU6DHe4AbMB5SYjC56B7TTM4\nAlwjn1TaVgX39Ow2Rkd6e3kCgYAWAKO5wyvWnEbunPQTSYF8yVvqH2yc41bmTbkn\nyukMyuJrPBeq0vVN5LUTULMG8x2t9UPxtXKldW62e4lazKs4V48py8uwMvqfHqmz\nwP++WrZSMqa1daFihs02vB0eo9hKj0SBPD3fOXkAOh7J+oOsjohD3KUOZDK028x1\nx3yFoQKBgQDGi1mq/CT40ZCTjDxtq0YrcAhhbJaE/dgXKSFI82AsEyS3yvJqA6ZL\nHEZZA5QytzKDjYh3aTueVZufCeGOmnj9JRabzqwXat/8BAJvY6yKKr/vSC7hXqel\nO72vJKYrxnjsjR1xFNxLqNH0425DrFsp62HsymqRtuXCGPfBASfcVQ==\n-----END RSA PRIVATE KEY-----\n";
const KEY_1024: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIICXgIBAAKBgQDnrIQmidsRS3yqJlcr9iMvZSdT+EcuUWIegFVD5eAoPhJl1++R\nxdWkGncHo/mKvtCk5gsSxAu0wxxFtm+0f8xTsovfmz1pOWN77flHh/YqvHLDXT++\npSgfN8wkFYMwmloxkRx20aSi42YQXkBfdULrjqeFXqxFC8Jn23OFg7yZxQIDAQAB\nAoGBAKJRJ8HMonUKm4ynEjpV2K8TQyu87zpPgNx388V/oL7xRnieg1Zx8s5oUG9E\n/sisCokOOEHso3sBnKRnPvqK87924Puz1vnkwEWi6LSw+vwMS4avNokBsM1MfZ+E\nYGqjTCq4GNrpdFQVhVn+Ouoqb0JzEy4yGufcj02blWSTXg/BAkEA/w2HCIqLd7G6\ngSpCY94ueeENYuuu5rBMqvKxr1JVO8LKzPtqH/vWoxH9YTYMaFgMQ8Mmi1g1wiLe\nLzQsfpmuFQJBAOiIw1ANul8x7GdhzAvcGeb4Qc06jap8wbM4CXeGVkRVO+QJ7cna\nz4fHW10Komme7SxRvqP/z9gK8GGYMFr22PECQCqOYESNkV3EWuEoYvF05f5SDcC+\noG0/Z1tyqTEepLgW9W2kWX3CsHp/Cu8IbKOQZWN9EVZYvoeI99eadf4duE0CQQDb\nJMCEultRCZiUmYsWBjj2/jHtOuh1qptVzlLFrPmx7m3B7EWH/Uml2ZBV8Aa96YP1\nR5iVsCjtnumJ4EZ6A7bRAkEA1olJRidq9P243SOa1BsRd3RonwPacB+AwlJ+5cUf\n+tSoDU1a78jbaAl2sfc5W1vGIlcJlQuJrb6B5f6Ox7ntaA==\n-----END RSA PRIVATE KEY-----\n";
const N_1024: &str = "56yEJonbEUt8qiZXK_YjL2UnU_hHLlFiHoBVQ-XgKD4SZdfvkcXVpBp3B6P5ir7QpOYLEsQLtMMcRbZvtH_MU7KL35s9aTlje-35R4f2Krxyw10_vqUoHzfMJBWDMJpaMZEcdtGkouNmEF5AX3VC646nhV6sRQvCZ9tzhYO8mcU";
const E: &str = "AQAB";
const MESSAGE: &[u8] = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";

fn sign(algorithm: Algorithm, pem: &str, message: &[u8]) -> Vec<u8> {
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let signer: Box<dyn JwtSigner> = (rust_crypto::DEFAULT_PROVIDER.signer_factory)(&algorithm, &key).unwrap();
    signature::Signer::try_sign(signer.as_ref(), message).unwrap()
}

fn verifies(algorithm: Algorithm, n: &str, message: &[u8], signature: &[u8]) -> bool {
    let key = DecodingKey::from_rsa_components(n, E).unwrap();
    let verifier = verifier(&algorithm, &key).unwrap();
    assert_eq!(verifier.algorithm(), algorithm);
    signature::Verifier::verify(verifier.as_ref(), message, &signature.to_vec()).is_ok()
}

#[test]
fn ring_checks_every_rsa_algorithm_as_rustcrypto_does() {
    let rsa = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ];
    for algorithm in rsa {
        let key = DecodingKey::from_rsa_components(N_2048, E).unwrap();
        assert!(ring_verifier(algorithm, &key).is_some(), "{algorithm:?} on ring");
        let signature = sign(algorithm, KEY_2048, MESSAGE);
        assert!(verifies(algorithm, N_2048, MESSAGE, &signature), "{algorithm:?}");
        let mut altered = signature.clone();
        altered[10] ^= 1;
        assert!(
            !verifies(algorithm, N_2048, MESSAGE, &altered),
            "{algorithm:?}: altered signature"
        );
        assert!(
            !verifies(
                algorithm,
                N_2048,
                b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0",
                &signature
            ),
            "{algorithm:?}: altered claims"
        );
        let other = sign(algorithm, OTHER_KEY_2048, MESSAGE);
        assert!(
            !verifies(algorithm, N_2048, MESSAGE, &other),
            "{algorithm:?}: another key"
        );
    }
    // A signature made for one hash does not pass as another.
    let rs256 = sign(Algorithm::RS256, KEY_2048, MESSAGE);
    assert!(!verifies(Algorithm::RS512, N_2048, MESSAGE, &rs256));
    assert!(!verifies(Algorithm::PS256, N_2048, MESSAGE, &rs256));
}

#[test]
fn keys_ring_does_not_take_stay_with_rustcrypto() {
    let small = DecodingKey::from_rsa_components(N_1024, E).unwrap();
    assert!(ring_verifier(Algorithm::RS256, &small).is_none(), "1024-bit modulus");
    let signature = sign(Algorithm::RS256, KEY_1024, MESSAGE);
    assert!(
        verifies(Algorithm::RS256, N_1024, MESSAGE, &signature),
        "still checked, by RustCrypto"
    );
    assert!(!verifies(Algorithm::RS256, N_1024, b"x.y", &signature));
    let rsa_key = DecodingKey::from_rsa_components(N_2048, E).unwrap();
    assert!(
        ring_verifier(Algorithm::ES256, &rsa_key).is_none(),
        "not an RSA algorithm"
    );
    assert!(ring_verifier(Algorithm::EdDSA, &rsa_key).is_none());
}
