// Command quantity-ref reads one quantity per line on stdin and prints, per line, what
// Kubernetes' own parser (k8s.io/apimachinery resource.ParseQuantity) makes of it, rounded up to
// a whole number: "ok <integer>" or "err". The reference for tests/quantity.rs. (Value() is not
// used: it wraps to 0 above int64; ParseQuantity itself caps at 2^63-1 and rounds any non-zero
// value up to at least 1n.)
//
// ParseQuantity spends time exponential in the exponent's digits for exponents such as
// e-2147483648 (it builds the power of ten): feed it exponents of a few hundred at most.
package main

import (
	"bufio"
	"fmt"
	"math/big"
	"os"

	"k8s.io/apimachinery/pkg/api/resource"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	ten := big.NewInt(10)
	for in.Scan() {
		q, err := resource.ParseQuantity(in.Text())
		if err != nil {
			fmt.Fprintln(out, "err")
			continue
		}
		d := q.AsDec()
		n := new(big.Int).Set(d.UnscaledBig())
		if s := int64(d.Scale()); s < 0 {
			n.Mul(n, new(big.Int).Exp(ten, big.NewInt(-s), nil))
		} else if s > 0 {
			den := new(big.Int).Exp(ten, big.NewInt(s), nil)
			quo, rem := new(big.Int).QuoRem(n, den, new(big.Int))
			if rem.Sign() > 0 {
				quo.Add(quo, big.NewInt(1))
			}
			n = quo
		}
		fmt.Fprintf(out, "ok %s\n", n.String())
	}
}
